"""The sink worker process (`python -m sinks.worker`), one per sink.

Owns the worker's main loop: reads its spec on stdin, takes the sink's events
from the journal (catch-up from its durable cursor, gaps) and the live fan-out,
holds at most WINDOW journal events in memory (beyond that only the highest
offset seen, read later), shapes them (sinks/shaping.py), starts their POSTs
on libcurl (sinks/delivery.py, sinks/http.py), moves and commits the cursor
(sinks/cursor.py), reports to the supervisor and obeys its commands
(docs/internals.md; an update's config is checked in sinks/worker_update.py, the
graceful stop after the loop is sinks/worker_shutdown.py). Signal handlers only set a flag
and wake the loop.

One thread: a single zmq.Poller waits on the live feed, the supervisor link,
the wake pipe and libcurl's sockets together, with a timeout that is the
nearest real deadline (libcurl's timer, a held event, a bulk envelope, the end
of a backoff wait, a due report or cursor commit). Nothing wakes the worker
periodically: while nothing happens it sleeps until its heartbeat report.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import sqlite3
import sys
import time

import msgspec
import zmq

from common import internal, logs
from common.backoff import Backoff
from common.config import Config, Paths, SinkConfig, decode_worker_spec
from common.link import Attempts, StopPublisher, Update, WorkerReport
from common.logs import RateLimited
from common.vocabulary import STARTED, UPDATED
from bus.journal import JournalCorrupt
from bus.journal_reader import JournalReader
from sinks import attempts, deliveries
from sinks.cursor import CursorTracker
from sinks.dead_letters import DeadLetters
from sinks.envelope_book import EnvelopeBook
from sinks.shadow import CursorShadow, shadow_path
from sinks.delivery import PAUSED, RUNNING, Dispatcher
from sinks.http import HttpClient
from sinks.shaping import BAD_INPUT_LOG_INTERVAL, Batcher, Post, ShapeSettings, Shaper, wrap
from sinks.worker_shutdown import shut_down
from sinks.worker_update import check_update

log = logging.getLogger("sinks.worker")

WINDOW = 4096  # journal events held in memory at most; the rest waits in the journal
WINDOW_BYTES = 8 * 1024 * 1024  # ... and at most this many payload bytes of them
READ_BATCH = 512  # rows per journal read
READS_PER_TURN = 8  # journal reads per loop turn (the loop stays responsive during a catch-up)
FEED_PER_TURN = 4096  # live messages taken per loop turn
RCVHWM = 10000  # live messages ZeroMQ may buffer; more are dropped and read from the journal
JOURNAL_RETRY = 0.5  # s reads pause after a failed journal call
# s between cursor commits to SQLite (when it moved): every acknowledgement is in the cursor
# shadow at once (sinks/shadow.py), so this only bounds what a power loss may deliver twice.
COMMIT_INTERVAL = 1.0
STALL_TICK = 0.05  # s before a deadline that could not be acted on is looked at again
HEAD_CHECK_BUSY = 1.0  # s: the journal head is read this soon after live traffic
_NOBLOCK = int(zmq.NOBLOCK)  # a plain int: pyzmq's enum flags cost Python-level work per call


class Worker:
    """One sink's publisher: journal and feed in, POSTs out."""

    def __init__(self, config: Config, sink: SinkConfig, *, start_paused: bool = False):
        self.start_paused = start_paused
        self.config = config
        self.sink = sink
        self.name = sink.name
        self.paths = Paths.of(config)
        self.reader = JournalReader(self.paths.journal_path, sink.name)
        self.committed = self.reader.cursor()  # what SQLite holds
        # The shadow may know acknowledgements made after the last SQLite commit (a kill -9).
        self.shadow = CursorShadow(shadow_path(self.paths.state_dir, sink.name), self.reader.epoch)
        cursor, acked = self.shadow.resume(self.committed)
        self._acked_before = set(acked)  # acknowledged above the mark before a crash: not sent again
        self.tracker = CursorTracker(cursor)
        self._shadowed = cursor
        self.next_offset = cursor + 1  # the next journal offset to take into memory
        self.head = max(cursor, self.reader.head())  # the highest offset known to exist
        self.bad_frames = 0
        self._bad_frame_log = RateLimited(BAD_INPUT_LOG_INTERVAL)
        self.journal_errors = 0
        self._journal_retry_at = 0.0  # after a failed journal call, reads pause briefly
        self._row_size = 1024.0  # running mean payload size, to size journal reads
        self._stop = False
        self.stop_event_asked = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self.poller = zmq.Poller()  # the feed, the link, the wake pipe and libcurl's sockets
        self.poller.register(self._wake_r, zmq.POLLIN)
        tuning = config.tuning
        self.dead_letters = DeadLetters(sink, self.reader)
        self.dispatcher = Dispatcher(
            sink.name, HttpClient(sink, tuning, watch=self._watch),
            Backoff(initial=tuning.initial_retry_backoff, maximum=tuning.max_retry_backoff),
            sink.max_in_flight, max_rate=sink.max_rate, judge=self.dead_letters.judge,
        )
        self.shaper = Shaper(ShapeSettings.of(config, sink), self.reader.epoch, sink.name,
                             emit=self._enqueue, discard=self.tracker.done)
        self.batcher = self._new_batcher(sink)  # bulk: with self.book, the envelopes recorded

    # ------------------------------------------------------------ plumbing

    def wake(self) -> None:
        """Wake the main loop (from a signal handler)."""
        try:
            os.write(self._wake_w, b"!")
        except OSError:
            pass  # the pipe is full: the loop is awake anyway

    def _watch(self, fd: int, bits: int) -> None:
        """libcurl's socket callback: keep FD in the poller with the bits it waits for (0: none)."""
        if bits:
            self.poller.register(fd, bits)  # curl's POLL_IN/POLL_OUT are zmq's POLLIN/POLLOUT
        else:
            try:
                self.poller.unregister(fd)
            except KeyError:
                pass

    def request_stop(self, stop_event: bool = False) -> None:
        self._stop = True
        self.stop_event_asked = self.stop_event_asked or stop_event
        self.wake()

    def _new_batcher(self, sink: SinkConfig) -> Batcher | None:
        """Bulk: a batcher for new envelopes and the book that records them; None (and no book) otherwise."""
        self.book = self.shaper.recorded = self.dead_letters.on_split = None
        if not sink.bulk:
            return None
        self.book = EnvelopeBook(self.reader, self.reader.epoch, sink.version, self.tracker.cursor,
                                 self.dispatcher.put)
        self.shaper.recorded, self.dead_letters.on_split = self.book.item_of, self.book.split
        return Batcher(sink.bulk_max_events, sink.bulk_interval, sink.version, self.book.formed)

    def _enqueue(self, post: Post) -> None:
        if self.batcher is None:
            self.dispatcher.put(post)
        elif not post.offsets:  # agent-made or a redriven dead letter: never shares an envelope
            self.batcher.flush()
            self.book.alone(wrap([post], self.sink.version))
        elif not self.book.route(post):  # held by a recorded envelope: re-formed as it was
            self.batcher.add(post)

    @property
    def accepting(self) -> bool:
        return self.dispatcher.state == RUNNING and not self._stop

    # ------------------------------------------------------------ the loop

    def run(self) -> int:
        ctx = zmq.Context()
        self.sub = ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.setsockopt(zmq.RCVHWM, RCVHWM)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"")
        self.sub.connect(self.paths.fanout_endpoint)
        self.link = internal.connect_to_supervisor(ctx, self.paths.supervisor_endpoint,
                                                   internal.worker_identity(self.name))
        poller = self.poller
        poller.register(self.sub, zmq.POLLIN)
        poller.register(self.link, zmq.POLLIN)
        now = time.monotonic()
        if self.start_paused:  # its sink has an alarm: count the backlog, send nothing
            self.dispatcher.pause()
        else:
            self._enqueue(self.shaper.lifecycle(STARTED, now))
            for post in self.dead_letters.redriven_posts(self.shaper, now):  # before the backlog
                self._enqueue(post)
        log.info("sink %s: started (version %d, cursor %d, head %d)", self.name, self.sink.version,
                 self.tracker.cursor, self.head)
        self._last_commit = now
        self._next_head_check = now + HEAD_CHECK_BUSY  # events journaled before the feed connected
        self.report(now)  # at once: the supervisor learns the publisher runs, with the backlog at start
        try:
            while not self._stop:
                # Rounded up to whole ms: zmq truncates, and a deadline 0.4 ms away would spin.
                for item, events in poller.poll(math.ceil(self._poll_timeout(time.monotonic()) * 1000)):
                    if item is self.sub:
                        self._drain_feed()
                    elif item is self.link:
                        self._drain_link()
                    elif item == self._wake_r:
                        self._drain_wake()
                    else:
                        self.dispatcher.socket_ready(item, events)
                self._turn(time.monotonic())
            shut_down(self)
        finally:
            self.dispatcher.release()
            self.sub.close(0)
            self.link.close()
            ctx.term()
            self.reader.close()
            self.shadow.close()
        return 0

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
        return (self.accepting and self.next_offset <= self.head and now >= self._journal_retry_at
                and self._read_room() > 0)

    def _poll_timeout(self, now: float) -> float:
        if self._can_read(now):
            return 0.0  # catching up
        due = [self._last_report + internal.HEARTBEAT_INTERVAL, self._next_head_check]
        if self._unreported:  # as the last turn left it
            due.append(self._last_report + internal.REPORT_INTERVAL)
        if self.tracker.cursor > self.committed:
            due.append(self._last_commit + COMMIT_INTERVAL)
        for deadline in (self.shaper.next_deadline(), self.batcher.next_deadline() if self.batcher else None,
                         self.book.next_deadline() if self.book else None):
            if deadline is not None:
                # One still past after a turn cannot be acted on yet (a held event in a stalled
                # window, a stopped publisher): look again after a tick, do not spin.
                due.append(deadline if deadline > now else now + STALL_TICK)
        deadline = self.dispatcher.next_deadline(now)  # libcurl's timers, the end of a backoff wait
        if deadline is not None:
            due.append(deadline)
        return max(0.0, min(due) - now)

    def _turn(self, now: float) -> None:
        dispatcher = self.dispatcher
        dispatcher.timer_due(now)
        dispatcher.collect(now)
        self.collect()
        if dispatcher.sent.fresh and now >= dispatcher.sent.stream_at:  # someone follows
            deliveries.stream(self.link, dispatcher.sent, self.name, self.config, now)
        self._acknowledge()
        if self.accepting:
            self._catch_up(now)
            # With unread events behind a full window, a held event's partner may be among them.
            stalled = (self.next_offset <= self.head and self._read_room() == 0
                       and self.tracker.undone > self.shaper.held)
            self.shaper.expire(now, read_all=not stalled)
            if self.batcher is not None:
                self.batcher.tick(now)
                self.book.flush_due(self.next_offset, now, self.shaper)
                self.book.send_recorded(now)  # recorded before the first POST
            self._acknowledge()  # events filtered out or merged are done too
            dispatcher.pump(now)
        if now >= self._next_head_check:
            self._next_head_check = now + internal.HEARTBEAT_INTERVAL
            self._journal_call(lambda: self._see_head(self.reader.head()))
        if self.tracker.cursor > self.committed and now - self._last_commit >= COMMIT_INTERVAL:
            self._last_commit = now
            self.commit()
        figures = self._figures()
        if figures != self._reported:
            if figures[0] != self._reported[0] or now - self._last_report >= internal.REPORT_INTERVAL:
                self.report(now)  # a change of state at once, other changes at most every REPORT_INTERVAL
        elif now - self._last_report >= internal.HEARTBEAT_INTERVAL:
            self.report(now)
        self._unreported = self._reported != figures

    def _figures(self) -> tuple:
        """What a report tells, in short: a new report is due when this changes."""
        d = self.dispatcher
        return (d.state, self._backlog(), d.in_flight, d.delivered, d.failures, d.backoff.failures,
                self.committed, self.head, self.dead_letters.set_aside, self.dead_letters.redriven, d.sent.following)

    def _backlog(self) -> int:
        return self.tracker.undone + max(0, self.head - self.next_offset + 1)

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 512):
                pass
        except BlockingIOError:
            pass

    def _see_head(self, offset: int) -> None:
        if offset > self.head:
            self.head = offset

    def _drain_feed(self) -> None:
        now = time.monotonic()
        recv = self.sub.recv
        for _ in range(FEED_PER_TURN):
            # recv_multipart, inlined: its RCVMORE getsockopt (and enum conversion) per frame costs
            # more than reading Frame.more.
            try:
                frame = recv(_NOBLOCK, copy=False)
            except zmq.Again:
                return
            frames = [frame.bytes]
            while frame.more:
                frame = recv(_NOBLOCK, copy=False)
                frames.append(frame.bytes)
            if len(frames) != 3 or len(frames[1]) != 8:
                self.bad_frames += 1
                if self._bad_frame_log.allow(now=now) is not None:
                    log.warning("sink %s: ignoring a fan-out message of %d frames (%d so far)",
                                self.name, len(frames), self.bad_frames)
                continue
            offset = int.from_bytes(frames[1], "big")
            if offset > self.head:
                self.head = offset
                # The fan-out may drop (a full queue): read the head soon after traffic, in case
                # the last messages of a burst were the ones dropped.
                self._next_head_check = min(self._next_head_check, now + HEAD_CHECK_BUSY)
            if offset == self.next_offset and self.accepting and self._room() > 0:
                self._accept(offset, frames[2], now)
            # below next_offset: a duplicate; above it: a gap, read from the journal

    def _accept(self, offset: int, payload: bytes, now: float) -> None:
        self.tracker.add(offset, len(payload))
        self.next_offset = offset + 1
        if self._acked_before and offset in self._acked_before:
            # Acknowledged by the receiver before this worker's predecessor died (cursor shadow).
            self._acked_before.discard(offset)
            self.tracker.done(offset)
            return
        self.shaper.offer(offset, payload, now)

    def _catch_up(self, now: float) -> None:
        for _ in range(READS_PER_TURN):
            if not self._can_read(now):
                return
            limit = min(self._read_room(), READ_BATCH)
            rows = self._journal_call(lambda: self.reader.read(self.next_offset - 1, limit))
            if rows is None:
                return
            if not rows:  # nothing above next_offset after all
                self.head = self.next_offset - 1
                return
            size = 0
            for offset, _topic, payload in rows:
                size += len(payload)
                self._accept(offset, payload, now)
            self._row_size = max(64.0, 0.5 * self._row_size + 0.5 * size / len(rows))
            self._see_head(self.next_offset - 1)

    def _journal_call(self, fn):
        try:
            return fn()
        except sqlite3.Error as exc:
            self.journal_errors += 1
            self._journal_retry_at = time.monotonic() + JOURNAL_RETRY
            if self.journal_errors == 1 or self.journal_errors % 100 == 0:
                log.warning("sink %s: journal access failed (%s); %d failures so far, retrying",
                            self.name, exc, self.journal_errors)
            return None

    def collect(self) -> None:
        completed, dead_letters = self.dispatcher.completed, self.dead_letters
        while completed:
            post = completed.popleft()
            self.shadow.acknowledged(post.offsets)
            self.tracker.done_many(post.offsets)
            if dead_letters.redriving:
                dead_letters.delivered(post)
        while dead_letters.released:  # set aside: done, not delivered
            offsets = dead_letters.released.popleft().offsets
            self.shadow.acknowledged(offsets)
            self.tracker.done_many(offsets)

    def _acknowledge(self) -> None:
        """Write the low-water mark to the shadow whenever it moved (8 bytes into a shared mapping)."""
        cursor = self.tracker.cursor
        if cursor != self._shadowed:
            self._shadowed = cursor
            self.shadow.moved(cursor)

    def commit(self) -> None:
        cursor = self.tracker.cursor
        if self._journal_call(lambda: self.reader.commit_cursor(cursor) or True):
            self.committed = cursor
            self.shadow.committed(cursor)

    # ------------------------------------------------------------ supervisor link

    def report(self, now: float) -> None:
        self._last_report = now
        self._reported = self._figures()
        self._unreported = False
        internal.send_nowait(self.link, WorkerReport(
            sink=self.name, pid=os.getpid(), publisher=self.dispatcher.state, backlog=self._backlog(),
            cursor=self.committed, head=self.head,  # the durable cursor
            dead_lettered=self.dead_letters.set_aside, redriven=self.dead_letters.redriven, streaming=self.dispatcher.sent.following,
            **self.dispatcher.snapshot(),
        ))

    def _drain_link(self) -> None:
        for command in internal.commands(self.link, f"sink {self.name}"):
            if isinstance(command, StopPublisher):
                self.stop_publisher()
            elif isinstance(command, Update):
                self.update(command.config, command.announce)
            elif isinstance(command, Attempts):  # formatted only now, never per attempt
                internal.send_nowait(self.link, attempts.answer(self.dispatcher.recent, command, self.name, self.config))
            elif isinstance(command, deliveries.COMMANDS):  # the POSTs as sent: formatted only now, or streamed
                deliveries.obey(command, self.dispatcher.sent, self.link, self.name, self.config)
            else:
                self.request_stop(command.stop_event)

    def stop_publisher(self) -> None:
        """Stop sending; what was in memory stays in the journal, the feed is still counted."""
        if self.dispatcher.state == PAUSED:  # a repeated command
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
        usable = check_update(raw_config, self.name, self.dispatcher.client.key, self._watch)
        if usable is None:
            return
        config, sink, client = usable.config, usable.sink, usable.client
        tuning = config.tuning
        logs.configure(f"sink:{self.name}", logs.config_secrets(config))
        self.config, self.sink = config, sink
        self.shaper.configure(ShapeSettings.of(config, sink))
        self.dead_letters.configure(sink)
        if sink.bulk and self.batcher is not None:
            self.batcher.configure(sink.bulk_max_events, sink.bulk_interval, sink.version)
            self.book.version = sink.version
        elif self.batcher is not None or sink.bulk:
            if self.batcher is not None:
                self.batcher.flush()
                self.book.close(time.monotonic(), self.shaper)
            self.batcher = self._new_batcher(sink)
        self.dispatcher.configure(sink.max_in_flight, tuning.initial_retry_backoff, tuning.max_retry_backoff, client,
                                  max_rate=sink.max_rate)
        log.info("sink %s: settings updated%s", self.name, " (announced)" if announce else "")
        if announce and self.accepting:
            self._enqueue(self.shaper.lifecycle(UPDATED, time.monotonic()))


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
    signal.signal(signal.SIGTERM, lambda *_: worker.request_stop())
    return worker.run()


if __name__ == "__main__":
    sys.exit(main())
