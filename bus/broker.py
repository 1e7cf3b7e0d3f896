"""The broker process (`python -m bus.broker`): bus in, journal, fan-out out.

Reads its spec (`{"config": CONFIG}`) as JSON on stdin, then:

- binds a SUB (subscribed to everything, very high RCVHWM) on
  `agent.publish_endpoint`, socket file mode 0660 so conference processes in
  the agent's group can connect;
- binds a PUB on the fan-out endpoint (may drop; workers repair gaps from the
  journal) and connects a DEALER to the supervisor;
- loop: sleep in one poll (ingress, supervisor DEALER, the signal self-pipe)
  until a message, a command, a signal or a real deadline; on a message take
  what is queued, and unless that fills a batch (BATCH_MAX messages /
  BATCH_BYTES / BATCH_SECONDS) wait out the group-commit window
  (`group_commit_window()`: about the recent gap between messages, at most
  GROUP_COMMIT_MAX_WINDOW, none for a slower trickle) once and take what came
  meanwhile (bus/ingress.py); validate each message, append the accepted ones to the journal
  in ONE transaction with one acceptance time, and only then publish `[topic,
  offset (8 bytes, big-endian), payload]` for each (docs/internals.md); a
  batch's bytes also stay within the WAL limit (half the reserve);
- numbered messages (a third frame from a numbering client, bus/numbering.py):
  a repeat of one already journaled is dropped before it is validated and
  counted (`duplicates`, never a rejection); the highest sequence per
  publisher is written in the same transaction as the events;
- reports to the supervisor when a figure changed (at most every
  REPORT_INTERVAL), at once on a change of the journal-full state, and every
  HEARTBEAT_INTERVAL when nothing changed;
- housekeeping (bus/housekeeping.py: purge delivered rows older than
  `retention_hours`, make room from retained rows, checkpoint, measure) only
  when there can be something to do; the free space on the disk is also looked
  at with each heartbeat (a disk another file fills while nothing arrives
  still raises the alarm within HEARTBEAT_INTERVAL);
- an append that would pass max_journal_mb (its rows counted twice: WAL and
  database) first makes room from retained rows; when that is not enough, or
  the disk is full once they gave their room back, the journal is full:
  rejects new messages with reason `journal_full`, logs once on `support.events`, retries
  every second while full and leaves the state when below 95 % of the bound and a write
  succeeds. Nothing accepted is ever dropped. A small preallocated reserve
  file (`{state_dir}/journal.reserve`, at most a quarter of the free space) is
  released when the disk fills (an append fails, or less than a quarter of it
  is free), so the WAL can be checkpointed (it is kept below half the
  reserve), the workers can still move their cursors and the purge can shrink
  the journal; a disk-full state ends only once there is room for the reserve
  and as much again.

Rejected messages are counted per reason and logged on `eventsink.bus` at most
once per reason per minute. SIGTERM/SIGINT or a `shutdown` from the
supervisor: stop, journal and publish what ZeroMQ already holds until the
ingress is quiet, keeping the subscription so publishers queue the rest for the
next broker, then have each publisher end its connection and journal what was
on it (bus/handover.py, `finish()`), exit 0.
Exit codes: 0 clean stop, 1 cannot bind/start, 2 bad spec, 3 corrupt journal.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import sys
import time

import zmq

from common import internal, logs
from common.config import Config, Paths, decode_spec
from common.link import BrokerReport, Shutdown
from common.logs import RateLimited
from common.vocabulary import RejectReason
from bus.housekeeping import (  # noqa: F401 - HOUSEKEEPING_INTERVAL, PURGE_MAX_DEFER: tests read them here
    HOUSEKEEPING_INTERVAL, PURGE_MAX_DEFER, RESERVE_MAX_BYTES, RESERVE_MIN_BYTES, JournalKeeping, disk_room,
)
from bus import handover
from bus.ingress import BATCH_BYTES, BATCH_SECONDS, IngressDrain
from bus.publisher import READY_TOPIC
from bus.journal_files import SpaceReserve
from bus.journal_schema import JournalCorrupt, JournalFull
from bus.journal_writer import JournalWriter
from bus.numbering import NUMBER_BYTES, Numbering
from bus.validate import REJECT_LOG_INTERVAL, Accepted, RejectLog, Validator

log = logging.getLogger("eventsink.bus")
support = logging.getLogger(logs.SUPPORT)

INGRESS_RCVHWM = 2_000_000
FANOUT_SNDHWM = 100_000
SHUTDOWN_DRAIN_SECONDS = 0.5  # s spent at most journaling what is already queued at shutdown ...
SHUTDOWN_QUIET_SECONDS = 0.02  # ... ended sooner by this long without a message
SHUTDOWN_HANDOVER_SECONDS = 2.0  # s the publishers get to end their connections (bus/handover.py)
_NOBLOCK = int(zmq.NOBLOCK)  # plain ints: pyzmq's enum flags cost Python-level arithmetic per frame
_MORE_NOBLOCK = int(zmq.SNDMORE | zmq.NOBLOCK)


class Broker(IngressDrain, JournalKeeping):
    """One broker: its sockets, journal, validator and counters."""

    def __init__(self, config: Config):
        self.config = config
        self.paths = Paths.of(config)
        self.validator = Validator(int(config.agent.max_message_kb * 1024))
        self.bound_bytes = int(config.agent.max_journal_mb * 1024 * 1024)
        self.append_bound = self.bound_bytes  # less the WAL limit (open()): room to make room
        self.rejects = RejectLog()
        self.received = 0
        self.transactions = 0  # journal transactions that committed events
        self.head = 0  # the highest offset assigned, kept here so a report costs no query
        self.stopping = False
        self.last_batch = (float("-inf"), 0)  # (when its first message was taken, its length)
        self.wake_fd = -1  # readable when a signal arrived (signal.set_wakeup_fd), -1 when none
        self.journal_full = False
        self.disk_full = False
        self.full_retry_at = 0.0
        self.full_need = 0  # bytes the batch refused at the bound needed (0: full for another reason)
        self.full_log = RateLimited(REJECT_LOG_INTERVAL)  # "journal full" on support.events
        self.full_announced = False
        self.purge_log = RateLimited(REJECT_LOG_INTERVAL)  # a failing purge: every second on a full disk
        self.used_estimate = 0  # bytes: measured, plus the estimate of each append since
        self.retention_seconds = config.agent.retention_hours * 3600
        self.extent = None  # the journal's rows as last measured (bus.journal.Extent)
        self.retained = 0  # delivered rows kept for replay, as last measured
        self.wal_limit = RESERVE_MIN_BYTES // 2  # set in open(): half the reserve
        self.wal_written = 0  # WAL bytes written (estimate) since the last checkpoint
        self.batch_bytes_max = BATCH_BYTES  # and no more than the WAL limit (open())
        self.drained_bytes = 0  # frame bytes of the last batch drain() took
        self.page_size = 4096
        self.backlogged = False  # the last drain left messages queued: a burst is coming in
        self.purged_at = time.monotonic()
        self.housekeeping_at: float | None = None  # None: nothing to purge or checkpoint until rows arrive
        self.housekeeping_wait = HOUSEKEEPING_INTERVAL
        self.reported: tuple | None = None  # the figures of the last report
        self.reported_at = float("-inf")
        self.journal: JournalWriter | None = None
        self.numbering = Numbering({})  # loaded from the journal in open()
        self.ctx: zmq.Context | None = None

    # ------------------------------------------------------------ setup

    def open(self) -> None:
        os.makedirs(self.paths.runtime_dir, mode=0o750, exist_ok=True)
        ipc_path = _ipc_path(self.paths.publish_endpoint)
        if ipc_path:
            os.makedirs(os.path.dirname(ipc_path) or ".", mode=0o750, exist_ok=True)
        self.journal = JournalWriter(self.paths.journal_path)
        self.page_size = self.journal.page_size
        self.measure()
        self.head = self.journal.head()
        self.numbering = Numbering(self.journal.publisher_marks(), keep_seconds=self.retention_seconds)
        if self.journal.holds_events():
            self.housekeeping_at = time.monotonic()  # rows from before a restart may be purgeable
        reserve_path = os.path.join(self.paths.state_dir, "journal.reserve")
        # Never more than a quarter of the room there is: a reserve that cannot be made at all
        # (a small or nearly full disk) would leave a full journal no way to drain.
        reserve_bytes = max(RESERVE_MIN_BYTES, min(RESERVE_MAX_BYTES, self.bound_bytes // 8,
                                                   disk_room(reserve_path) // 4))
        self.reserve = SpaceReserve(reserve_path, reserve_bytes)
        # Un-checkpointed WAL must fit in the reserve: on a full disk, copying it into the
        # database is the first step of draining. A batch (one transaction) stays within it too.
        self.wal_limit = reserve_bytes // 2
        self.journal.limit_wal(self.wal_limit)
        # Appends stop a WAL limit short of the bound: deleting retained rows to make room (and
        # the workers' cursor commits) write WAL too, and the journal must never pass the bound.
        self.append_bound = max(0, self.bound_bytes - self.wal_limit)
        self.batch_bytes_max = min(BATCH_BYTES, self.wal_limit)
        if not self.reserve.ensure():
            support.warning("cannot set aside %d bytes of disk next to the journal: the disk is nearly full", reserve_bytes)
        self.ctx = zmq.Context()
        self.ingress = self.ctx.socket(zmq.SUB)
        self.ingress.setsockopt(zmq.RCVHWM, INGRESS_RCVHWM)
        self.ingress.setsockopt(zmq.LINGER, 0)
        # A frame far beyond the limit drops that publisher's connection instead of filling memory.
        self.ingress.setsockopt(zmq.MAXMSGSIZE, max(64 * 1024 * 1024, 4 * self.validator.max_message_bytes))
        self.ingress.setsockopt(zmq.SUBSCRIBE, b"")
        self.ingress.setsockopt(zmq.SUBSCRIBE, READY_TOPIC)  # withdrawn first at a graceful stop
        self.ingress.bind(self.paths.publish_endpoint)
        ipc_path = _ipc_path(self.paths.publish_endpoint)
        if ipc_path:
            os.chmod(ipc_path, 0o660)  # conference processes in the agent's group may connect
        self.fanout = self.ctx.socket(zmq.PUB)
        self.fanout.setsockopt(zmq.SNDHWM, FANOUT_SNDHWM)
        self.fanout.setsockopt(zmq.LINGER, 1000)
        self.fanout.bind(self.paths.fanout_endpoint)
        self.supervisor = internal.connect_to_supervisor(self.ctx, self.paths.supervisor_endpoint, internal.BROKER_IDENTITY)
        log.info("broker listening on %s, journal %s (epoch %s, head %d)",
                 self.paths.publish_endpoint, self.paths.journal_path, self.journal.epoch, self.journal.head())

    def close(self) -> None:
        for name in ("ingress", "fanout", "supervisor"):
            sock = getattr(self, name, None)
            if sock is not None and not sock.closed:
                sock.close()
        if self.ctx is not None:
            self.ctx.term()
        if self.journal is not None:
            self.journal.close()

    # ------------------------------------------------------------ main loop

    def run(self) -> int:
        poller = zmq.Poller()
        poller.register(self.ingress, zmq.POLLIN)
        poller.register(self.supervisor, zmq.POLLIN)
        if self.wake_fd >= 0:
            poller.register(self.wake_fd, zmq.POLLIN)
        self.report()  # at once: the supervisor learns the head and the journal's state
        while not self.stopping:
            pause = max(0.0, self.next_deadline() - time.monotonic())
            # Rounded up: a deadline 0.4 ms away must not become a run of zero-timeout polls.
            ready = dict(poller.poll(math.ceil(pause * 1000)))
            if self.ingress in ready:
                batch = self.drain()
                if batch:
                    self.process(batch, self.drained_bytes)
            if self.supervisor in ready:
                self.poll_supervisor()
            if self.wake_fd in ready:
                _drain_fd(self.wake_fd)  # the handler has set `stopping`
            self.on_deadlines(time.monotonic())
        self.finish()
        return 0

    def next_deadline(self) -> float:
        """The soonest of: the next report (heartbeat at the latest), housekeeping, a journal-full retry."""
        due = [self.report_due()]
        if self.housekeeping_at is not None:
            due.append(self.housekeeping_at)
        if self.journal_full:
            due.append(self.full_retry_at)
        return min(due)

    def on_deadlines(self, now: float) -> None:
        if self.journal_full and now >= self.full_retry_at:
            self.retry_full()
        if self.housekeeping_at is not None and now >= self.housekeeping_at:
            self.housekeeping()
        if now >= self.report_due():
            if self.figures() == self.reported:
                # The disk may fill while nothing arrives (another file): looked at with each
                # heartbeat, at no cost of a wake-up of its own (housekeeping looks while busy).
                self.check_disk()
            if now >= self.report_due():  # unless entering journal_full has just reported
                self.report()

    def process(self, batch: list[list[bytes]], size: int | None = None) -> None:
        """Validate BATCH (SIZE: its frames' bytes, as drain() counted them), journal the accepted
        messages in one transaction, then fan them out."""
        rows: list[Accepted] = []
        append, check, reject, full = rows.append, self.validator.check, self.rejects.reject, self.journal_full
        fresh = self.numbering.fresh
        for frames in batch:
            # A repeat of a numbered message already journaled (a resend): dropped and counted,
            # before the cost of validating it again.
            if len(frames) == 3 and len(frames[2]) == NUMBER_BYTES and not fresh(frames[2]):
                continue
            try:
                result = check(frames)
            except Exception as exc:  # a bug in validation must never kill the broker
                reject(RejectReason.INVALID_JSON, f"could not be checked: {type(exc).__name__}: {str(exc)[:80]}")
                continue
            if type(result) is not Accepted:
                reject(result.reason, result.detail)
            elif full:
                reject(RejectReason.JOURNAL_FULL, "the journal is full; event not accepted")
            else:
                append(result)  # an Accepted is the (topic, payload) row
        if rows:
            if size is None:
                size = sum(len(f) for frames in batch for f in frames)
            received = self.received
            self.commit(rows, size)
            if self.received - received < len(rows):
                self.recall_numbers()  # refused rows were not journaled: a resend of them is new
        if self.numbering.prune_due:
            self.recall_numbers(forget=True)

    def recall_numbers(self, forget: bool = False) -> None:
        """Take the highest sequence per publisher from the journal again (FORGET: after deleting
        the publishers unseen for long, bus/numbering.py); on a failing disk, keep what we have."""
        unseen_since = self.numbering.pruned() if forget else None
        try:
            self.numbering.highest = self.journal.publisher_marks(unseen_since)
        except Exception as exc:
            log.warning("cannot read the publishers' numbers from the journal: %s: %s", type(exc).__name__, exc)

    def commit(self, rows: list[tuple[str, bytes]], size: int) -> None:
        """Journal ROWS (about SIZE bytes of topics and payloads) and fan them out. At the bound
        (after making room) the rows that fit go in a transaction of their own, then the rest is
        tried again, until not even one fits: only then is the journal full and the rest refused."""
        while rows:
            grows, wal = self.estimate(len(rows), size)
            keep = len(rows)
            if self.used_estimate + grows + wal > self.append_bound:
                if self.refuse_if_never_fits(rows[0]):  # before room_for: no retained row goes for it
                    size, rows = max(0, size - len(rows[0][0]) - len(rows[0][1])), rows[1:]
                    continue
                if not self.room_for(grows + wal):
                    keep = self.rows_that_fit(len(rows), size)  # in order: the later ones wait, or are refused
            if not keep:
                self.full_need = sum(self.estimate(1, size // len(rows)))  # one row: see resume_mark
                self.enter_full(f"it holds {self.used_estimate} bytes, the bound is {self.bound_bytes} (max_journal_mb)")
                self.rejects.reject(RejectReason.JOURNAL_FULL, "the journal is full; event not accepted", len(rows))
                return
            if keep < len(rows):
                grows, wal = self.estimate(keep, size * keep // len(rows))
            if not self.journal_rows(rows[:keep], grows, wal):
                return
            if keep < len(rows):
                self.flush_wal()  # the next measure sees the rows once, not also in the WAL
            size = size * (len(rows) - keep) // len(rows)
            rows = rows[keep:]

    def journal_rows(self, rows: list[tuple[str, bytes]], grows: int, wal: int) -> bool:
        """Append ROWS in one transaction (GROWS bytes in the database, WAL in the WAL: estimates),
        then fan them out; False when they were refused (the journal is full)."""
        assert self.journal is not None
        accepted_at = time.time()
        try:
            offsets = self.journal.append(rows, accepted_at)
        except JournalFull as exc:
            offsets = self.append_on_full_disk(rows, accepted_at, exc)
            if offsets is None:
                return False
        except Exception as exc:
            if not self.journal_full:
                log.error("journal write failed: %s: %s", type(exc).__name__, exc)
            self.enter_full(f"the journal cannot be written ({type(exc).__name__}: {exc})")
            self.rejects.reject(RejectReason.JOURNAL_FULL, "the journal cannot be written; event not accepted", len(rows))
            return False
        self.received += len(rows)
        self.transactions += 1
        self.head = offsets[-1]
        self.housekeeping_wait = HOUSEKEEPING_INTERVAL
        soon = time.monotonic() + HOUSEKEEPING_INTERVAL
        if self.housekeeping_at is None or self.housekeeping_at > soon:
            # Never pushed back by later commits: under a steady stream the rounds stay one a second.
            self.housekeeping_at = soon
        # send_multipart, inlined with plain int flags: its per-frame enum arithmetic cost more than the sends.
        send = self.fanout.send
        for row, offset in zip(rows, offsets):
            try:
                send(_topic_bytes(row[0]), _MORE_NOBLOCK)
                send(offset.to_bytes(8, "big"), _MORE_NOBLOCK)
                send(row[1], _NOBLOCK)
            except zmq.Again:
                pass  # the fan-out may drop (a PUB drops whole messages at its HWM): workers repair gaps from the journal
        self.used_estimate += grows + wal
        self.wal_written += wal
        if self.wal_written >= self.wal_limit:
            self.flush_wal()
        return True

    # ------------------------------------------------------------ reports

    def figures(self) -> tuple:
        """What a report tells; a report is due (after REPORT_INTERVAL) when it changed."""
        return (self.received, self.rejects.total, self.used_estimate, self.journal_full, self.head, self.retained,
                self.numbering.duplicates)

    def report_due(self) -> float:
        changed = self.figures() != self.reported
        return self.reported_at + (internal.REPORT_INTERVAL if changed else internal.HEARTBEAT_INTERVAL)

    def report(self) -> None:
        self.reported = self.figures()
        self.reported_at = time.monotonic()
        internal.send_nowait(self.supervisor, BrokerReport(
            pid=os.getpid(), received=self.received, rejected=dict(self.rejects.counts),
            journal_bytes=self.used_estimate, journal_full=self.journal_full, head=self.head,
            transactions=self.transactions, retained=self.retained, duplicates=self.numbering.duplicates,
        ))

    def poll_supervisor(self) -> None:
        for command in internal.commands(self.supervisor, "broker"):
            if isinstance(command, Shutdown):
                log.info("shutdown requested by the supervisor")
                self.stopping = True

    def finish(self) -> None:
        """Journal and publish what ZeroMQ already holds for us until the ingress is quiet (at most
        SHUTDOWN_DRAIN_SECONDS), then end every publisher's connection without losing what is on
        it (bus/handover.py), journal that, close the ingress and send a last report.

        First the READY_TOPIC subscription is withdrawn: a `Publisher` reads that as "the agent is
        stopping" and keeps what it is given in memory from then on, so its traffic ends within
        SHUTDOWN_QUIET_SECONDS and it sends the rest to the next broker (bus/publisher.py; what
        it did have in transit it resends, and the journal drops the repeats).
        The subscription to everything (b"") is kept to the end on purpose: a bare PUB then
        keeps queueing for its connection while the agent is away (up to its SNDHWM) and sends
        it to the next broker; unsubscribing it would make every PUB drop what it publishes until
        the next broker subscribes (measured with a bare PUB at 500/s: ~125 events lost per
        restart, against none)."""
        self.ingress.setsockopt(zmq.UNSUBSCRIBE, READY_TOPIC)
        deadline = time.monotonic() + SHUTDOWN_DRAIN_SECONDS
        self._journal_until(lambda: time.monotonic() < deadline, quiet=True)
        endpoint = self.paths.publish_endpoint
        connections = handover.accepted(endpoint)
        handover.stop_accepting(endpoint)
        handover.end_writing(connections)
        deadline = time.monotonic() + SHUTDOWN_HANDOVER_SECONDS
        self._journal_until(lambda: handover.still_open(connections) and time.monotonic() < deadline)
        if handover.still_open(connections):
            log.warning("a publisher did not end its connection within %.0f s; what it sends now waits for the "
                        "next broker or is lost", SHUTDOWN_HANDOVER_SECONDS)
        # ZeroMQ has closed them after passing on everything they carried: take the rest.
        self._journal_until(lambda: True, quiet=True, wait=0.0)
        self.ingress.close(linger=0)
        self.report()
        log.info("broker stopped: %d events journaled, rejected %s", self.received, self.rejects.counts or "none")

    def _journal_until(self, going, quiet: bool = False, wait: float = SHUTDOWN_QUIET_SECONDS) -> None:
        """Journal what arrives while GOING() (QUIET: and until nothing has come for WAIT seconds;
        without QUIET a pause only lets GOING be asked again)."""
        while going():
            if not self.ingress.poll(math.ceil(wait * 1000), zmq.POLLIN):
                if quiet:
                    return
                continue
            self.process(self.drain(window=0.0, max_seconds=BATCH_SECONDS), self.drained_bytes)


def _drain_fd(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except (BlockingIOError, OSError):
        pass


_TOPICS: dict[str, bytes] = {}


def _topic_bytes(topic: str) -> bytes:
    """TOPIC in UTF-8 (cached: the bus has a handful of event names)."""
    encoded = _TOPICS.get(topic)
    if encoded is None:
        encoded = topic.encode("utf-8")
        if len(_TOPICS) < 64:
            _TOPICS[topic] = encoded
    return encoded


def _ipc_path(endpoint: str) -> str | None:
    if endpoint.startswith("ipc://") and not endpoint.startswith("ipc://@"):
        return endpoint[len("ipc://"):]
    return None


def main() -> int:
    try:
        config, _ = decode_spec(sys.stdin.buffer.read())
    except Exception as exc:
        logs.configure("broker")
        log.error("cannot read the broker spec on stdin: %s", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return 2
    finally:
        try:
            sys.stdin.close()
        except OSError:
            pass
    logs.configure("broker", logs.config_secrets(config))
    broker = Broker(config)

    def stop(signum, frame) -> None:
        broker.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    # The handler only sets a flag: this pipe is what wakes the loop's poll (no timeout to wait out).
    broker.wake_fd, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    try:
        try:
            broker.open()
        except JournalCorrupt as exc:
            log.error("%s", exc)
            return 3
        except (OSError, zmq.ZMQError, JournalFull) as exc:
            log.error("broker cannot start: %s", exc)
            return 1
        return broker.run()
    finally:
        broker.close()


if __name__ == "__main__":
    sys.exit(main())
