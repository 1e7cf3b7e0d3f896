"""The sink worker process (`python -m sinks.worker`), one per sink.

Owns the worker's main loop: reads its spec on stdin, takes the sink's events
from the journal (catch-up from its durable cursor, gaps) and the live fan-out,
holds at most WINDOW journal events in memory (beyond that only the highest
offset seen, read later), shapes them (sinks/shaping.py), starts their POSTs
on libcurl (sinks/delivery.py, sinks/http.py), moves and commits the cursor
(sinks/cursor.py), reports to the supervisor and obeys its commands when they are
due (docs/internals.md; what a report says and which part obeys which command is
sinks/worker_link.py, an update's config is checked in sinks/worker_update.py, the
graceful stop after the loop is sinks/worker_shutdown.py).

One thread on the one loop of common/loop.py: the live feed, the supervisor
link and libcurl's sockets are its handlers; every deadline is a loop timer
that the component owning it arms (sinks/deadline.py): a held event, a bulk
envelope, a record retry, the end of a backoff wait, libcurl's timer, a due
report, the heartbeat, the cursor commit, the head check. Signals are loop
callbacks. The pipeline is straight: feed -> shaper -> batcher (bulk) ->
dispatcher -> HTTP client, and every Post comes back once, through the
dispatcher's `on_done`, to `_done` here (cursor, cursor shadow, dead letters;
the rings are sinks/delivery_counts.py's). Nothing wakes the worker periodically: while
nothing happens it sleeps until its heartbeat report.
"""

from __future__ import annotations

import functools
import logging
import signal
import sqlite3
import sys
import time

import msgspec
import zmq

from bus.journal import JournalCorrupt
from bus.journal_reader import JournalReader
from bus.shadow_marks import shadow_path
from common import internal, logs
from common.backoff import Backoff
from common.config import decode_worker_spec
from common.config_types import Config, Paths, SinkConfig
from common.logs import RateLimited
from common.loop import Loop
from common.vocabulary import AgentEvent, PublisherState
from sinks import worker_link
from sinks.acknowledger import Acknowledger
from sinks.dead_letters import DeadLetters
from sinks.deadline import Deadline
from sinks.delivery import Dispatcher
from sinks.envelope_book import EnvelopeBook
from sinks.http import HttpClient
from sinks.post import Post
from sinks.shadow import CursorShadow
from sinks.shaping import BAD_INPUT_LOG_INTERVAL, Batcher, Shaper, ShapeSettings, wrap
from sinks.worker_shutdown import shut_down
from sinks.worker_update import apply_update, check_update

log = logging.getLogger("sinks.worker")

WINDOW = 4096  # journal events held in memory at most; the rest waits in the journal
WINDOW_BYTES = 8 * 1024 * 1024  # ... and at most this many payload bytes of them
READ_BATCH = 512  # rows per journal read
READS_PER_TURN = 8  # journal reads per loop turn (the loop stays responsive during a catch-up)
FEED_PER_TURN = 4096  # live messages taken per loop turn
RCVHWM = 10000  # live messages ZeroMQ may buffer; more are dropped and read from the journal
JOURNAL_RETRY = 0.5  # s reads pause after a failed journal call
STALL_TICK = 0.05  # s before a deadline that could not be acted on is looked at again
HEAD_CHECK_BUSY = 1.0  # s: the journal head is read this soon after live traffic
_NOBLOCK = int(zmq.NOBLOCK)  # a plain int: pyzmq's enum flags cost Python-level work per call
_EVENTS, _POLLIN = int(zmq.EVENTS), int(zmq.POLLIN)


class Worker:
    """One sink's publisher: journal and feed in, POSTs out."""

    def __init__(self, config: Config, sink: SinkConfig, *, start_paused: bool = False):
        self.start_paused = start_paused
        self.config = config
        self.sink = sink
        self.name = sink.name
        self.paths = Paths.of(config)
        self.reader = JournalReader(self.paths.journal_path, sink.name)
        self.loop = Loop()
        self._timers(self.loop)
        self._acknowledgement(sink)
        self._intake()
        self._pipeline(config, sink)
        self._sockets()

    def _acknowledgement(self, sink: SinkConfig) -> None:
        """Where every ended Post goes: the dead letters and the acknowledger (cursor and its shadow)."""
        self.dead_letters = DeadLetters(sink, self.reader)
        self.acks = Acknowledger(
            self.reader,
            CursorShadow(shadow_path(self.paths.state_dir, sink.name), self.reader.epoch),
            self.dead_letters,
            self.loop,
            self._journal_call,
            self._on_timer,
        )
        self.tracker = self.acks.tracker

    def _intake(self) -> None:
        """Where the feed and the journal reads start, from the cursor, and what they count."""
        cursor = self.tracker.cursor
        self.next_offset = cursor + 1  # the next journal offset to take into memory
        self.head = max(cursor, self.reader.head())  # the highest offset known to exist
        self.bad_frames = 0
        self._bad_frame_log = RateLimited(BAD_INPUT_LOG_INTERVAL)
        self.journal_errors = 0
        self._journal_retry_at = 0.0  # after a failed journal call, reads pause briefly
        self._row_size = 1024.0  # running mean payload size, to size journal reads
        self._stop = False
        self.accepting = True  # the publisher runs and no stop was asked (kept as the two change)
        self.stop_event_asked = False

    def _pipeline(self, config: Config, sink: SinkConfig) -> None:
        """The stages a journal event goes through: shaper -> batcher (bulk) -> dispatcher -> HTTP client."""
        tuning = config.tuning
        self.dispatcher = Dispatcher(
            sink.name,
            self._new_client(HttpClient(sink, tuning, loop=self.loop)),
            Backoff(initial=tuning.initial_retry_backoff, maximum=tuning.max_retry_backoff),
            sink.max_in_flight,
            max_rate=sink.max_rate,
            judge=self.dead_letters.judge,
            on_done=self.acks.done,
            on_state_change=self._state_changed,
            wake_at=self._pump_due.at,
        )
        self.shaper = Shaper(
            ShapeSettings.of(config, sink),
            self.reader.epoch,
            sink.name,
            emit=self.dispatcher.put,
            discard=self.acks.discarded,
        )
        self.shaper.on_hold = self._held_due.at
        self.batcher = self._new_batcher(sink)  # bulk: with self.book, the envelopes recorded

    def _timers(self, loop: Loop) -> None:
        """Every deadline of the worker, each a loop timer armed by what owns it."""
        self._pump_due = Deadline(loop, self._on_timer)  # the dispatcher's backoff wait or pacing
        self._held_due = Deadline(loop, self._expire_held)  # the shaper's held events
        self._bulk_due = Deadline(loop, self._on_timer)  # the batcher's envelope, the book's record retry
        self._read_due = Deadline(loop, self._on_timer)  # reads paused after a failed journal call
        self._stream_due = Deadline(loop, lambda: worker_link.stream(self))  # POSTs held back from a follower
        self._head_due = Deadline(loop, self._check_head)
        self._report_due = Deadline(loop, self._report_if_changed)
        self._heartbeat = Deadline(loop, self._report_if_changed)
        self._reading = False  # a catch-up step is queued on the loop
        self._head_check_at = 0.0  # when _head_due runs (kept here: the feed compares it per message)
        self._dirty = False  # something a report tells may have changed since the last one

    def _sockets(self) -> None:
        self.ctx = zmq.Context()
        self.sub = self.ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.setsockopt(zmq.RCVHWM, RCVHWM)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"")
        self.sub.connect(self.paths.fanout_endpoint)
        self.link = internal.connect_to_supervisor(
            self.ctx, self.paths.supervisor_endpoint, internal.worker_identity(self.name)
        )
        self.loop.add_handler(self.sub, self._drain_feed)
        self.loop.add_handler(self.link, self._drain_link)

    def _new_client(self, client: HttpClient) -> HttpClient:
        client.on_finished = self._posts_ended
        return client

    def request_stop(self, stop_event: bool = False) -> None:
        self._stop = True
        self.accepting = False
        self.stop_event_asked = self.stop_event_asked or stop_event
        self.loop.stop()

    def _new_batcher(self, sink: SinkConfig) -> Batcher | None:
        """Bulk: a batcher for new envelopes and the book that records them; None (and no book) otherwise.
        The shaper's next stage is the batcher's front (`_put_bulk`) or the dispatcher."""
        self.book = self.shaper.recorded = self.dead_letters.on_split = None
        self.put = self.shaper._emit_post = self.dispatcher.put
        if not sink.bulk:
            return None
        self.book = EnvelopeBook(self.reader, self.reader.epoch, sink.version, self.tracker.cursor, self.dispatcher.put)
        self.shaper.recorded, self.dead_letters.on_split = self.book.item_of, self.book.split
        self.put = self.shaper._emit_post = self._put_bulk
        return Batcher(sink.bulk_max_events, sink.bulk_interval, sink.version, self.book.formed)

    def _put_bulk(self, post: Post) -> None:
        if not post.offsets:  # agent-made or a redriven dead letter: never shares an envelope
            self.batcher.flush()
            self.book.alone(wrap([post], self.sink.version))
        elif not self.book.route(post):  # held by a recorded envelope: re-formed as it was
            self.batcher.add(post)

    # ------------------------------------------------------------ the loop

    def run(self) -> int:
        now = time.monotonic()
        if self.start_paused:  # its sink has an alarm: count the backlog, send nothing
            self.dispatcher.pause()
        else:
            self.put(self.shaper.lifecycle(AgentEvent.STARTED, now))
            for post in self.dead_letters.redriven_posts(self.shaper, now):  # before the backlog
                self.put(post)
        log.info(
            "sink %s: started (version %d, cursor %d, head %d)",
            self.name,
            self.sink.version,
            self.tracker.cursor,
            self.head,
        )
        self._head_check_at = now + HEAD_CHECK_BUSY  # events journaled before the feed connected
        self._head_due.set(self._head_check_at)
        self.report(now)  # at once: the supervisor learns the publisher runs, with the backlog at start
        self._work(now)
        try:
            if not self._stop:
                self.loop.run()
            shut_down(self)
        finally:
            self.dispatcher.clients.close()
            self.loop.close()
            self.sub.close(0)
            self.link.close()
            self.ctx.term()
            self.reader.close()
            self.acks.close()
        return 0

    def _work(self, now: float) -> None:
        """After any input (a feed batch, a command, ended POSTs, a timer): move the pipeline on."""
        if self.accepting:
            if self.next_offset <= self.head and not self._reading and self._can_read(now):
                self._reading = True  # not for a full window: reading waits for acknowledgements
                self.loop.add_callback(self._catch_up)
            if self.batcher is not None:
                self._work_bulk(now)
            self.dispatcher.pump(now)
        if self.dispatcher.counts.sent.fresh:  # someone follows: what was just sent goes out by stream_at
            self._stream_due.at(self.dispatcher.counts.sent.stream_at)
        if not self._dirty:
            self._dirty = True
            self._report_due.at(self._last_report + internal.REPORT_INTERVAL)

    def _work_bulk(self, now: float) -> None:
        batcher, book = self.batcher, self.book
        batcher.tick(now)
        book.flush_due(self.next_offset, now, self.shaper)
        book.send_recorded(now)  # recorded before the first POST
        for due in (batcher.next_deadline(), book.next_deadline()):
            if due is not None:
                self._bulk_due.at(due)

    def _on_timer(self) -> None:
        self._work(time.monotonic())

    def _posts_ended(self) -> None:
        """The HTTP client has results: account for them (each Post reaches `_done` once)."""
        now = time.monotonic()
        self.dispatcher.collect(now)
        self._work(now)

    def _expire_held(self) -> None:
        now = time.monotonic()
        if self.accepting:
            # With unread events behind a full window, a held event's partner may be among them.
            stalled = (
                self.next_offset <= self.head and self._read_room() == 0 and self.tracker.undone > self.shaper.held
            )
            self.shaper.expire(now, read_all=not stalled)
            due = self.shaper.next_deadline()
            if due is not None:
                # One still past cannot be acted on yet (a stalled window): look again after a tick.
                self._held_due.at(due if due > now else now + STALL_TICK)
        self._work(now)

    @property
    def committed(self) -> int:
        return self.acks.committed

    def commit(self) -> None:
        self.acks.commit()

    # ------------------------------------------------------------ intake: the feed and the journal

    def _room(self) -> int:
        """How many more journal events fit in memory now."""
        by_bytes = (WINDOW_BYTES - self.tracker.undone_bytes) / self._row_size
        return max(0, min(WINDOW - self.tracker.undone, int(by_bytes)))

    def _read_room(self) -> int:
        """How many journal events to read now: 0 until a good share of the window is free.

        Without this a full window drained one POST at a time was refilled one row at a time,
        a journal query per event; the window is still refilled long before it runs dry."""
        room = self._room()
        whole = min(WINDOW, int(WINDOW_BYTES / self._row_size))
        return room if room >= min(READ_BATCH // 2, max(1, whole // 4)) or room == whole else 0

    def _can_read(self, now: float) -> bool:
        return (
            self.accepting and self.next_offset <= self.head and now >= self._journal_retry_at and self._read_room() > 0
        )

    def _see_head(self, offset: int) -> None:
        if offset > self.head:
            self.head = offset

    def _check_head(self) -> None:
        now = time.monotonic()
        self._head_check_at = now + internal.HEARTBEAT_INTERVAL
        self._head_due.set(self._head_check_at)
        self._journal_call(lambda: self._see_head(self.reader.head()))
        self._work(now)

    def _drain_feed(self, events: int = 0) -> None:
        now = time.monotonic()
        sub = self.sub
        recv = sub.recv
        accepting = self.accepting
        tracker = self.tracker
        for taken in range(FEED_PER_TURN):
            # recv_multipart, inlined: its RCVMORE getsockopt (and enum conversion) per frame costs
            # more than reading Frame.more. The poll said a message is ready; after it, one EVENTS
            # look is cheaper than the exception a paced feed would end every turn with.
            if taken == 1 and not sub.getsockopt(_EVENTS) & _POLLIN:
                break
            try:
                frame = recv(_NOBLOCK, copy=False)
            except zmq.Again:
                break
            frames = [frame.bytes]
            while frame.more:
                frame = recv(_NOBLOCK, copy=False)
                frames.append(frame.bytes)
            if len(frames) != 3 or len(frames[1]) != 8:
                self._bad_frame(len(frames), now)
                continue
            offset = int.from_bytes(frames[1], "big")
            if offset > self.head:
                self.head = offset
                # The fan-out may drop (a full queue): read the head soon after traffic, in case
                # the last messages of a burst were the ones dropped.
                if now + HEAD_CHECK_BUSY < self._head_check_at:
                    self._head_check_at = now + HEAD_CHECK_BUSY
                    self._head_due.at(self._head_check_at)
            if (
                offset == self.next_offset
                and accepting
                and tracker.undone < WINDOW
                and tracker.undone_bytes <= WINDOW_BYTES - self._row_size
            ):  # self._room() > 0, inlined
                self._accept(offset, frames[2], now)
            # below next_offset: a duplicate; above it: a gap, read from the journal
        self._work(now)

    def _bad_frame(self, frames: int, now: float) -> None:
        self.bad_frames += 1
        if self._bad_frame_log.allow(now=now) is not None:
            log.warning(
                "sink %s: ignoring a fan-out message of %d frames (%d so far)", self.name, frames, self.bad_frames
            )

    def _accept(self, offset: int, payload: bytes, now: float) -> None:
        self.tracker.add(offset, len(payload))
        self.next_offset = offset + 1
        acked_before = self.acks.acked_before
        if acked_before and offset in acked_before:
            # Acknowledged by the receiver before this worker's predecessor died (cursor shadow).
            acked_before.discard(offset)
            self.acks.discarded(offset)
            return
        self.shaper.offer(offset, payload, now)

    def _catch_up(self) -> None:
        """At most READS_PER_TURN journal reads, then the loop's other work (a catch-up stays responsive)."""
        self._reading = False
        now = time.monotonic()
        for _ in range(READS_PER_TURN):
            if not self._can_read(now):
                break
            limit = min(self._read_room(), READ_BATCH)
            rows = self._journal_call(functools.partial(self.reader.read, self.next_offset - 1, limit))
            if rows is None:
                self._read_due.at(self._journal_retry_at)
                break
            if not rows:  # nothing above next_offset after all
                self.head = self.next_offset - 1
                break
            size = 0
            for offset, _topic, payload in rows:
                size += len(payload)
                self._accept(offset, payload, now)
            self._row_size = max(64.0, 0.5 * self._row_size + 0.5 * size / len(rows))
            self._see_head(self.next_offset - 1)
        if self._can_read(now):  # more to read: after what else is ready
            self._reading = True
            self.loop.add_callback(self._catch_up)
        self._work(now)

    def _journal_call(self, fn):
        try:
            return fn()
        except sqlite3.Error as exc:
            self.journal_errors += 1
            self._journal_retry_at = time.monotonic() + JOURNAL_RETRY
            if self.journal_errors == 1 or self.journal_errors % 100 == 0:
                log.warning(
                    "sink %s: journal access failed (%s); %d failures so far, retrying",
                    self.name,
                    exc,
                    self.journal_errors,
                )
            return None

    # ------------------------------------------------------------ supervisor link

    def _report_if_changed(self) -> None:
        """A change is told at most every REPORT_INTERVAL; with none, the heartbeat."""
        now = time.monotonic()
        self._dirty = False
        if worker_link.figures(self) != self._reported or now - self._last_report >= internal.HEARTBEAT_INTERVAL:
            self.report(now)

    def _state_changed(self) -> None:
        """A change of state is told at once (it raises or clears an alarm), after this turn's work."""
        self.accepting = self.dispatcher.state == PublisherState.RUNNING and not self._stop
        self.loop.add_callback(self._report_if_changed)

    def report(self, now: float) -> None:
        self._last_report = now
        self._reported = worker_link.figures(self)
        self._heartbeat.set(now + internal.HEARTBEAT_INTERVAL)
        internal.send_nowait(self.link, worker_link.report_of(self))

    def _drain_link(self, events: int = 0) -> None:
        for command in internal.commands(self.link, f"sink {self.name}"):
            worker_link.obey(self, command)
        self._work(time.monotonic())

    def stop_publisher(self) -> None:
        """Stop sending; what was in memory stays in the journal, the feed is still counted."""
        if self.dispatcher.state == PublisherState.PAUSED:  # a repeated command
            self.report(time.monotonic())
            return
        dropped = self.dispatcher.pause()
        self.shaper.drop_held()
        if self.batcher is not None:
            self.batcher.drop()
            self.book.drop()
        log.info("sink %s: publisher stopped (%d queued POSTs left to the journal)", self.name, dropped)
        self.report(time.monotonic())

    def update(self, raw_config, announce: bool) -> None:
        """Apply new node/sink/tuning settings live; announce with eventsink_updated if asked."""
        usable = check_update(raw_config, self.name, self.dispatcher.client.key, self.loop)
        if usable is not None:
            apply_update(self, usable, announce)

    def _rebatch(self, sink: SinkConfig) -> None:
        """The bulk stage after an update: the same one reconfigured, or closed and rebuilt (or gone)."""
        if sink.bulk and self.batcher is not None:
            self.batcher.configure(sink.bulk_max_events, sink.bulk_interval, sink.version)
            self.book.version = sink.version
        elif self.batcher is not None or sink.bulk:
            if self.batcher is not None:
                self.batcher.flush()
                self.book.close(time.monotonic(), self.shaper)
            self.batcher = self._new_batcher(sink)


def main() -> int:
    try:
        config, name, paused = decode_worker_spec(sys.stdin.buffer.read())
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        print(f"sinks.worker: unusable spec on stdin: {exc}", file=sys.stderr)
        return 2
    sink = config.sink_named(name) if name else None
    if sink is None:
        print(f"sinks.worker: the spec names no configured sink ({name!r})", file=sys.stderr)
        return 2
    logs.configure(f"sink:{name}", logs.config_secrets(config))
    try:
        worker = Worker(config, sink, start_paused=paused)
    except (OSError, sqlite3.Error, JournalCorrupt, ValueError) as exc:
        log.error("sink %s: cannot start: %s", name, exc)
        return 1
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the supervisor, which shuts us down
    worker.loop.add_signal_handler(signal.SIGTERM, lambda signum: worker.request_stop())
    return worker.run()


if __name__ == "__main__":
    sys.exit(main())
