"""The broker process (`python -m bus.broker`): bus in, journal, fan-out out.

Reads its spec (`{"config": CONFIG}`) as JSON on stdin, then:

- binds a SUB (subscribed to everything, very high RCVHWM) on
  `agent.publish_endpoint`, socket file mode 0660 so conference processes in
  the agent's group can connect;
- binds a PUB on the fan-out endpoint (may drop; workers repair gaps from the
  journal) and connects a DEALER to the supervisor;
- loop (common/loop.py): the ingress and the supervisor DEALER are its handlers,
  each deadline a timer its owner registers (the report here, housekeeping and
  the journal-full retry in bus/housekeeping.py), signals loop callbacks; it
  sleeps in one poll until a message, a command, a signal or a real deadline; on a message take
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

from bus import handover
from bus.housekeeping import FULL_MESSAGE, JournalKeeper, Rows
from bus.ingress import BATCH_BYTES, BATCH_SECONDS, IngressDrain
from bus.journal_schema import JournalCorrupt, JournalFull
from bus.journal_writer import JournalWriter
from bus.numbering import NUMBER_BYTES, Numbering
from bus.publisher import READY_TOPIC
from bus.validate import Accepted, RejectLog, Validator
from common import internal, logs
from common.config import decode_spec
from common.config_types import Config, Paths
from common.link import BrokerReport, Shutdown
from common.loop import Loop, Timer
from common.vocabulary import RejectReason

log = logging.getLogger("eventsink.bus")
support = logging.getLogger(logs.SUPPORT)

INGRESS_RCVHWM = 2_000_000
FANOUT_SNDHWM = 100_000
SHUTDOWN_DRAIN_SECONDS = 0.5  # s spent at most journaling what is already queued at shutdown ...
SHUTDOWN_QUIET_SECONDS = 0.02  # ... ended sooner by this long without a message
SHUTDOWN_HANDOVER_SECONDS = 2.0  # s the publishers get to end their connections (bus/handover.py)
_NOBLOCK = int(zmq.NOBLOCK)  # plain ints: pyzmq's enum flags cost Python-level arithmetic per frame
_MORE_NOBLOCK = int(zmq.SNDMORE | zmq.NOBLOCK)


class Broker:
    """One broker: its loop, sockets, the batches off its ingress (IngressDrain), its journal (kept
    by a JournalKeeper), validator and counters."""

    def __init__(self, config: Config, loop: Loop | None = None):
        self.config = config
        self.paths = Paths.of(config)
        self.loop = loop if loop is not None else Loop()
        self.validator = Validator(int(config.agent.max_message_kb * 1024))
        self.rejects = RejectLog()
        self.received = 0
        self.transactions = 0  # journal transactions that committed events
        self.head = 0  # the highest offset assigned, kept here so a report costs no query
        self.intake: IngressDrain | None = None  # batches off the ingress socket (open())
        self.keeper = JournalKeeper(
            self.loop,
            int(config.agent.max_journal_mb * 1024 * 1024),
            config.agent.retention_hours * 3600,
            self.rejects,
            on_full_change=self.report,
            on_round_done=self.schedule_report,
            backlogged=lambda: self.intake is not None and self.intake.backlogged,
        )
        self.reported: tuple | None = None  # the figures of the last report
        self.reported_at = float("-inf")
        self._report_timer: Timer | None = None
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
        self.keeper.open(self.journal, os.path.join(self.paths.state_dir, "journal.reserve"))
        self.head = self.journal.head()
        self.numbering = Numbering(self.journal.publisher_marks(), keep_seconds=self.keeper.retention_seconds)
        self.ctx = zmq.Context()
        self.ingress = self._bind_ingress()
        self.intake = IngressDrain(self.ingress, min(BATCH_BYTES, self.keeper.wal_limit))
        self.fanout = self.ctx.socket(zmq.PUB)
        self.fanout.setsockopt(zmq.SNDHWM, FANOUT_SNDHWM)
        self.fanout.setsockopt(zmq.LINGER, 1000)
        self.fanout.bind(self.paths.fanout_endpoint)
        self.supervisor = internal.connect_to_supervisor(
            self.ctx, self.paths.supervisor_endpoint, internal.BROKER_IDENTITY
        )
        log.info(
            "broker listening on %s, journal %s (epoch %s, head %d)",
            self.paths.publish_endpoint,
            self.paths.journal_path,
            self.journal.epoch,
            self.journal.head(),
        )

    def _bind_ingress(self) -> zmq.Socket:
        assert self.ctx is not None
        ingress = self.ctx.socket(zmq.SUB)
        ingress.setsockopt(zmq.RCVHWM, INGRESS_RCVHWM)
        ingress.setsockopt(zmq.LINGER, 0)
        # A frame far beyond the limit drops that publisher's connection instead of filling memory.
        ingress.setsockopt(zmq.MAXMSGSIZE, max(64 * 1024 * 1024, 4 * self.validator.max_message_bytes))
        ingress.setsockopt(zmq.SUBSCRIBE, b"")
        ingress.setsockopt(zmq.SUBSCRIBE, READY_TOPIC)  # withdrawn first at a graceful stop
        ingress.bind(self.paths.publish_endpoint)
        ipc_path = _ipc_path(self.paths.publish_endpoint)
        if ipc_path:
            os.chmod(ipc_path, 0o660)  # conference processes in the agent's group may connect
        return ingress

    def close(self) -> None:
        self.loop.close()
        for name in ("ingress", "fanout", "supervisor"):
            sock = getattr(self, name, None)
            if sock is not None and not sock.closed:
                sock.close()
        if self.ctx is not None:
            self.ctx.term()
        if self.journal is not None:
            self.journal.close()

    # ------------------------------------------------------------ the loop

    def run(self) -> int:
        """Serve until a signal or the supervisor's shutdown, then hand over (`finish`); 0."""
        self.loop.add_handler(self.ingress, self.on_ingress)
        self.loop.add_handler(self.supervisor, self.on_supervisor)
        self.report()  # at once: the supervisor learns the head and the journal's state
        self.loop.run()
        self.loop.remove_handler(self.ingress)  # finish() reads it itself
        self.loop.remove_handler(self.supervisor)
        self.finish()
        return 0

    def stop(self, signum: int | None = None) -> None:
        """End `run()` after this turn (SIGTERM, SIGINT, or the supervisor's shutdown)."""
        self.loop.stop()

    def on_ingress(self, events: int) -> None:
        assert self.intake is not None
        batch = self.intake.drain()
        if batch:
            self.process(batch, self.intake.drained_bytes)
            self.schedule_report()

    def on_supervisor(self, events: int) -> None:
        for command in internal.commands(self.supervisor, "broker"):
            if isinstance(command, Shutdown):
                log.info("shutdown requested by the supervisor")
                self.stop()

    def process(self, batch: list[list[bytes]], size: int | None = None) -> None:
        """Validate BATCH (SIZE: its frames' bytes, as drain() counted them), journal the accepted
        messages in one transaction, then fan them out."""
        rows: list[Accepted] = []
        append, check, reject, full = rows.append, self.validator.check, self.rejects.reject, self.keeper.full
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
                reject(RejectReason.JOURNAL_FULL, FULL_MESSAGE)
            else:
                append(result)  # an Accepted is the (topic, payload) row
        if rows:
            if size is None:
                size = sum(len(f) for frames in batch for f in frames)
            received = self.received
            self.keeper.commit(rows, size, self.publish)
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

    def publish(self, rows: Rows, offsets: list[int]) -> None:
        """ROWS are journaled at OFFSETS: count them and fan them out."""
        self.received += len(rows)
        self.transactions += 1
        self.head = offsets[-1]
        # send_multipart, inlined with plain int flags: its per-frame enum arithmetic cost more than the sends.
        send = self.fanout.send
        for row, offset in zip(rows, offsets, strict=True):
            try:
                send(_topic_bytes(row[0]), _MORE_NOBLOCK)
                send(offset.to_bytes(8, "big"), _MORE_NOBLOCK)
                send(row[1], _NOBLOCK)
            except zmq.Again:
                # the fan-out may drop (a PUB drops whole messages at its HWM): workers repair gaps from the journal
                pass

    # ------------------------------------------------------------ reports

    def figures(self) -> tuple:
        """What a report tells; a report is due (after REPORT_INTERVAL) when it changed."""
        keeper = self.keeper
        return (
            self.received,
            self.rejects.total,
            keeper.used_estimate,
            keeper.full,
            self.head,
            keeper.retained,
            self.numbering.duplicates,
        )

    def report_due(self) -> float:
        changed = self.figures() != self.reported
        return self.reported_at + (internal.REPORT_INTERVAL if changed else internal.HEARTBEAT_INTERVAL)

    def schedule_report(self) -> None:
        """(Re)arm the report's timer for `report_due()`: sooner once a figure changed."""
        due = self.report_due()
        timer = self._report_timer
        if timer is not None and timer.pending:
            if timer.when == due:
                return
            timer.cancel()
        self._report_timer = self.loop.call_at(due, self.on_report_due)

    def on_report_due(self) -> None:
        if self.figures() == self.reported:
            # The disk may fill while nothing arrives (another file): looked at with each
            # heartbeat, at no cost of a wake-up of its own (housekeeping looks while busy).
            self.keeper.check_disk()
        if time.monotonic() >= self.report_due():  # unless entering the full state has just reported
            self.report()
        else:
            self.schedule_report()

    def report(self) -> None:
        self.reported = self.figures()
        self.reported_at = time.monotonic()
        keeper = self.keeper
        internal.send_nowait(
            self.supervisor,
            BrokerReport(
                pid=os.getpid(),
                received=self.received,
                rejected=dict(self.rejects.counts),
                journal_bytes=keeper.used_estimate,
                journal_full=keeper.full,
                head=self.head,
                transactions=self.transactions,
                retained=keeper.retained,
                duplicates=self.numbering.duplicates,
            ),
        )
        self.schedule_report()

    # ------------------------------------------------------------ graceful stop

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
            log.warning(
                "a publisher did not end its connection within %.0f s; what it sends now waits for the "
                "next broker or is lost",
                SHUTDOWN_HANDOVER_SECONDS,
            )
        # ZeroMQ has closed them after passing on everything they carried: take the rest.
        self._journal_until(lambda: True, quiet=True, wait=0.0)
        self.ingress.close(linger=0)
        self.report()
        log.info("broker stopped: %d events journaled, rejected %s", self.received, self.rejects.counts or "none")

    def _journal_until(self, going, quiet: bool = False, wait: float = SHUTDOWN_QUIET_SECONDS) -> None:
        """Journal what arrives while GOING() (QUIET: and until nothing has come for WAIT seconds;
        without QUIET a pause only lets GOING be asked again)."""
        assert self.intake is not None
        while going():
            if not self.ingress.poll(math.ceil(wait * 1000), zmq.POLLIN):
                if quiet:
                    return
                continue
            self.process(self.intake.drain(window=0.0, max_seconds=BATCH_SECONDS), self.intake.drained_bytes)


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
        return endpoint[len("ipc://") :]
    return None


def main() -> int:
    try:
        config, _ = decode_spec(sys.stdin.buffer.read())
    except Exception as exc:
        logs.configure("broker")
        log.error(
            "cannot read the broker spec on stdin: %s", str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        )
        return 2
    finally:
        try:
            sys.stdin.close()
        except OSError:
            pass
    logs.configure("broker", logs.config_secrets(config))
    broker = Broker(config)
    # Before open(): a signal during it is queued and ends the first turn of the loop.
    broker.loop.add_signal_handler(signal.SIGTERM, broker.stop)
    broker.loop.add_signal_handler(signal.SIGINT, broker.stop)
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
