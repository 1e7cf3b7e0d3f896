"""The broker process (`python -m bus.broker`): bus in, journal, fan-out out.

Reads its spec (`{"config": CONFIG}`) as JSON on stdin, then:

- binds a SUB (subscribed to everything, very high RCVHWM) on
  `agent.publish_endpoint`, socket file mode 0660 so conference processes in
  the agent's group can connect;
- binds a PUB on the fan-out endpoint (may drop; workers repair gaps from the
  journal) and connects a DEALER to the supervisor;
- loop: drain a batch (up to BATCH_MAX messages / BATCH_BYTES / BATCH_SECONDS),
  validate each message, append the accepted ones to the journal in ONE
  transaction and only then publish `[topic, offset (8 bytes, big-endian),
  payload]` for each (docs/internals.md);
- reports to the supervisor every REPORT_INTERVAL and at once on a change of
  the journal-full state; purges and checkpoints the journal every second;
- journal full (used bytes >= max_journal_mb, or the disk is full): rejects new
  messages with reason `journal_full`, logs once on `support.events`, retries
  every second and leaves the state when below 95 % of the bound and a write
  succeeds. Nothing accepted is ever dropped. A small preallocated reserve
  file (`{state_dir}/journal.reserve`, at most a quarter of the free space) is
  released when the disk fills (an append fails, or less than a quarter of it
  is free), so the WAL can be checkpointed (it is kept below half the
  reserve), the workers can still move their cursors and the purge can shrink
  the journal; a disk-full state ends only once there is room for the reserve
  and as much again.

Rejected messages are counted per reason and logged on `eventsink.bus` at most
once per reason per minute. SIGTERM/SIGINT or a `shutdown` from the
supervisor: stop, journal and publish what was already received, exit 0.
Exit codes: 0 clean stop, 1 cannot bind/start, 2 bad spec, 3 corrupt journal.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time

import zmq

from agent import internal, logs
from agent.config import Config, Paths, decode_spec
from bus.journal import Journal, JournalCorrupt, JournalFull, SpaceReserve
from bus.validate import Accepted, Validator

log = logging.getLogger("eventsink.bus")
support = logging.getLogger(logs.SUPPORT)

INGRESS_RCVHWM = 2_000_000
FANOUT_SNDHWM = 100_000
BATCH_MAX = 2000  # messages per journal transaction
BATCH_BYTES = 8 * 1024 * 1024  # payload bytes per journal transaction
BATCH_SECONDS = 0.005  # longest a batch keeps draining
HOUSEKEEPING_INTERVAL = 1.0  # s between purge + checkpoint
PURGE_MAX_DEFER = 5.0  # s the purge may wait while a burst is being journaled ...
PURGE_DEFER_MAX_RATIO = 0.5  # ... and only while the journal holds less than this share of its bound
FULL_RETRY_INTERVAL = 1.0  # s between attempts to leave journal_full
FULL_RESUME_RATIO = 0.95  # leave journal_full only below this share of the bound
PURGE_MAX_ROWS = 200_000  # events deleted per housekeeping round
REJECT_LOG_INTERVAL = 60.0  # s between two log lines for one reason
SHUTDOWN_DRAIN_SECONDS = 0.5  # s spent journaling what is already queued at shutdown
ROW_OVERHEAD = 40  # bytes a journal row costs beyond its payload (estimate)
RESERVE_MAX_BYTES = 8 * 1024 * 1024  # disk space held back for draining a journal on a full disk
RESERVE_MIN_BYTES = 64 * 1024
_NOBLOCK = int(zmq.NOBLOCK)  # plain ints: pyzmq's enum flags cost Python-level arithmetic per frame
_MORE_NOBLOCK = int(zmq.SNDMORE | zmq.NOBLOCK)


class RejectLog:
    """Counts rejects per reason; logs one line per reason per REJECT_LOG_INTERVAL with the count suppressed since."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self._last_logged: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def reject(self, reason: str, detail: str, n: int = 1) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + n
        now = time.monotonic()
        last = self._last_logged.get(reason)
        if last is not None and now - last < REJECT_LOG_INTERVAL:
            self._suppressed[reason] = self._suppressed.get(reason, 0) + n
            return
        suppressed = self._suppressed.pop(reason, 0)
        self._last_logged[reason] = now
        more = f" ({suppressed} more rejected for this reason since the last line)" if suppressed else ""
        log.warning("rejected bus message: %s: %s%s", reason, detail, more)


class Broker:
    """One broker: its sockets, journal, validator and counters."""

    def __init__(self, config: Config):
        self.config = config
        self.paths = Paths.of(config)
        self.validator = Validator(int(config.agent.max_message_kb * 1024))
        self.bound_bytes = int(config.agent.max_journal_mb * 1024 * 1024)
        self.rejects = RejectLog()
        self.received = 0
        self.stopping = False
        self.journal_full = False
        self.disk_full = False
        self.full_retry_at = 0.0
        self.full_logged_at = float("-inf")
        self.full_announced = False
        self.purge_logged_at = float("-inf")
        self.used_estimate = 0
        self.backlogged = False  # the last drain left messages queued: a burst is coming in
        self.purged_at = time.monotonic()
        self.journal: Journal | None = None
        self.ctx: zmq.Context | None = None

    # ------------------------------------------------------------ setup

    def open(self) -> None:
        os.makedirs(self.paths.runtime_dir, mode=0o750, exist_ok=True)
        ipc_path = _ipc_path(self.paths.publish_endpoint)
        if ipc_path:
            os.makedirs(os.path.dirname(ipc_path) or ".", mode=0o750, exist_ok=True)
        self.journal = Journal(self.paths.journal_path)
        self.used_estimate = self.journal.used_bytes()
        reserve_path = os.path.join(self.paths.state_dir, "journal.reserve")
        # Never more than a quarter of the room there is: a reserve that cannot be made at all
        # (a small or nearly full disk) would leave a full journal no way to drain.
        reserve_bytes = max(RESERVE_MIN_BYTES, min(RESERVE_MAX_BYTES, self.bound_bytes // 8,
                                                   _disk_room(reserve_path) // 4))
        self.reserve = SpaceReserve(reserve_path, reserve_bytes)
        # Un-checkpointed WAL must fit in the reserve: on a full disk, copying it into the
        # database is the first step of draining.
        self.journal.limit_wal(reserve_bytes // 2)
        if not self.reserve.ensure():
            support.warning("cannot set aside %d bytes of disk next to the journal: the disk is nearly full", reserve_bytes)
        self.ctx = zmq.Context()
        self.ingress = self.ctx.socket(zmq.SUB)
        self.ingress.setsockopt(zmq.RCVHWM, INGRESS_RCVHWM)
        self.ingress.setsockopt(zmq.LINGER, 0)
        # A frame far beyond the limit drops that publisher's connection instead of filling memory.
        self.ingress.setsockopt(zmq.MAXMSGSIZE, max(64 * 1024 * 1024, 4 * self.validator.max_message_bytes))
        self.ingress.setsockopt(zmq.SUBSCRIBE, b"")
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
        now = time.monotonic()
        next_report = now
        next_housekeeping = now + HOUSEKEEPING_INTERVAL
        while not self.stopping:
            timeout = max(0.0, min(next_report, next_housekeeping) - time.monotonic())
            batch = self.drain(timeout)
            if batch:
                self.process(batch)
            self.poll_supervisor()
            now = time.monotonic()
            if self.journal_full and now >= self.full_retry_at:
                self.retry_full()
            if now >= next_housekeeping:
                self.housekeeping()
                next_housekeeping = now + HOUSEKEEPING_INTERVAL
            if now >= next_report:
                self.report()
                next_report = now + internal.REPORT_INTERVAL
        self.finish()
        return 0

    def drain(self, timeout: float, max_seconds: float = BATCH_SECONDS) -> list[list[bytes]]:
        """Wait up to TIMEOUT for a message, then take what is queued (bounded by count, bytes, time)."""
        self.backlogged = False
        if not self.ingress.poll(int(timeout * 1000), zmq.POLLIN):
            return []
        batch: list[list[bytes]] = []
        size = 0
        recv = self.ingress.recv
        monotonic = time.monotonic
        deadline = monotonic() + max_seconds
        self.backlogged = True  # unless the queue runs dry below
        while len(batch) < BATCH_MAX and size < BATCH_BYTES:
            # recv_multipart, inlined: its RCVMORE getsockopt per frame costs more than Frame.more.
            try:
                frame = recv(_NOBLOCK, copy=False)
            except zmq.Again:
                self.backlogged = False
                break
            frames = [frame.bytes]
            while frame.more:
                frame = recv(_NOBLOCK, copy=False)
                frames.append(frame.bytes)
            batch.append(frames)
            for f in frames:
                size += len(f)
            if monotonic() >= deadline:
                break
        return batch

    def process(self, batch: list[list[bytes]]) -> None:
        """Validate BATCH, journal the accepted messages in one transaction, then fan them out."""
        rows: list[tuple[str, bytes]] = []
        append, check, reject, full = rows.append, self.validator.check, self.rejects.reject, self.journal_full
        for frames in batch:
            try:
                result = check(frames)
            except Exception as exc:  # a bug in validation must never kill the broker
                reject("invalid_json", f"could not be checked: {type(exc).__name__}: {str(exc)[:80]}")
                continue
            if type(result) is not Accepted:
                reject(result.reason, result.detail)
            elif full:
                reject("journal_full", "the journal is full; event not accepted")
            else:
                append(result)  # an Accepted is the (topic, payload) row
        if rows:
            self.commit(rows)

    def commit(self, rows: list[tuple[str, bytes]]) -> None:
        assert self.journal is not None
        try:
            offsets = self.journal.append(rows)
        except JournalFull as exc:
            self.disk_full = True
            released = self.reserve.release()  # room for the workers' cursors and the purge to drain the journal
            self.enter_full(f"the disk is full ({exc}){'; reserve space released' if released else ''}")
            self.rejects.reject("journal_full", "the journal is full; event not accepted", len(rows))
            return
        except Exception as exc:
            if not self.journal_full:
                log.error("journal write failed: %s: %s", type(exc).__name__, exc)
            self.enter_full(f"the journal cannot be written ({type(exc).__name__}: {exc})")
            self.rejects.reject("journal_full", "the journal cannot be written; event not accepted", len(rows))
            return
        self.received += len(rows)
        # send_multipart, inlined with plain int flags: its per-frame enum arithmetic cost more than the sends.
        send = self.fanout.send
        used = len(rows) * ROW_OVERHEAD
        for (topic, payload), offset in zip(rows, offsets):
            used += len(topic) + len(payload)
            try:
                send(_topic_bytes(topic), _MORE_NOBLOCK)
                send(offset.to_bytes(8, "big"), _MORE_NOBLOCK)
                send(payload, _NOBLOCK)
            except zmq.Again:
                pass  # the fan-out may drop (a PUB drops whole messages at its HWM): workers repair gaps from the journal
        self.used_estimate += used
        if self.used_estimate >= self.bound_bytes:
            self.used_estimate = self.journal.used_bytes()
            if self.used_estimate >= self.bound_bytes:
                self.enter_full(f"it holds {self.used_estimate} bytes, the bound is {self.bound_bytes} (max_journal_mb)")

    # ------------------------------------------------------------ journal full

    def enter_full(self, why: str) -> None:
        self.full_retry_at = time.monotonic() + FULL_RETRY_INTERVAL
        if not self.journal_full:
            self.journal_full = True
            now = time.monotonic()
            if now - self.full_logged_at >= REJECT_LOG_INTERVAL:
                self.full_logged_at = now
                self.full_announced = True
                support.error("Eventsink journal full: %s; new events are rejected until there is room again", why)
            self.report()

    def leave_full(self) -> None:
        self.journal_full = False
        if self.full_announced:
            self.full_announced = False
            support.warning("Eventsink journal has room again; accepting events")
        self.report()

    def retry_full(self) -> None:
        """While full, once per FULL_RETRY_INTERVAL: leave the state when below the resume mark and a write succeeds."""
        assert self.journal is not None
        if not self.journal_full or time.monotonic() < self.full_retry_at:
            return
        self.full_retry_at = time.monotonic() + FULL_RETRY_INTERVAL
        if self.used_estimate >= FULL_RESUME_RATIO * self.bound_bytes:
            return
        if self.disk_full and (_free_bytes(self.paths.state_dir) < self.reserve.size * 3 // 2
                               or not self.reserve.ensure()):
            return  # no room for the reserve and as much again: still full
        if self.journal.probe_write():
            self.disk_full = False
            self.leave_full()

    # ------------------------------------------------------------ housekeeping and reports

    def check_disk(self) -> None:
        """The disk may fill without an append failing (other files, the workers' cursor
        commits): below a quarter of the reserve free, release it and count the disk as full."""
        if self.disk_full:
            return
        room = _free_bytes(self.paths.state_dir)
        if room < self.reserve.size // 4:
            self.disk_full = True
            released = self.reserve.release()
            self.enter_full(f"the disk is full ({room} bytes free){'; reserve space released' if released else ''}")

    def defer_purge(self) -> bool:
        """True while a burst is coming in: deleting delivered rows (and handing their pages back) would
        compete with journaling it, and the pages are about to be reused anyway. Never longer than
        PURGE_MAX_DEFER, never on a journal that is full or holds half its bound."""
        return (self.backlogged and time.monotonic() - self.purged_at < PURGE_MAX_DEFER and not self.journal_full
                and not self.disk_full and self.used_estimate < PURGE_DEFER_MAX_RATIO * self.bound_bytes)

    def housekeeping(self) -> None:
        assert self.journal is not None
        self.check_disk()
        try:
            if not self.defer_purge():
                self.purged_at = time.monotonic()
                self.journal.purge(max_rows=PURGE_MAX_ROWS)
        except Exception as exc:
            now = time.monotonic()
            if now - self.purge_logged_at >= REJECT_LOG_INTERVAL:  # every second on a full disk: log rarely
                self.purge_logged_at = now
                log.warning("journal housekeeping failed: %s: %s", type(exc).__name__, exc)
        # Even when the purge failed: on a full disk the WAL must be copied into the database
        # (with the reserve's room) and truncated before anything can be deleted.
        self.journal.checkpoint()
        try:
            self.used_estimate = self.journal.used_bytes()
        except Exception as exc:
            log.warning("cannot measure the journal: %s: %s", type(exc).__name__, exc)
        if not self.journal_full and self.used_estimate >= self.bound_bytes:
            self.enter_full(f"it holds {self.used_estimate} bytes, the bound is {self.bound_bytes} (max_journal_mb)")
        self.retry_full()
        if not self.journal_full and not self.reserve.present():
            self.reserve.ensure()

    def report(self) -> None:
        assert self.journal is not None
        try:
            head = self.journal.head()
        except Exception:
            head = 0
        internal.send_nowait(self.supervisor, {
            "type": "report",
            "role": "broker",
            "pid": os.getpid(),
            "received": self.received,
            "rejected": dict(self.rejects.counts),
            "journal_bytes": self.used_estimate,
            "journal_full": self.journal_full,
            "head": head,
        })

    def poll_supervisor(self) -> None:
        for _ in range(100):
            try:
                frame = self.supervisor.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                msg = internal.decode(frame)
            except ValueError as exc:
                log.warning("ignoring a malformed message from the supervisor: %s", exc)
                continue
            if msg["type"] == "shutdown":
                log.info("shutdown requested by the supervisor")
                self.stopping = True

    def finish(self) -> None:
        """Journal and publish what is already queued (briefly), send a last report."""
        deadline = time.monotonic() + SHUTDOWN_DRAIN_SECONDS
        while time.monotonic() < deadline:
            batch = self.drain(0, max_seconds=max(0.0, deadline - time.monotonic()))
            if not batch:
                break
            self.process(batch)
        self.report()
        log.info("broker stopped: %d events journaled, rejected %s", self.received, self.rejects.counts or "none")


def _free_bytes(directory: str) -> int:
    """Bytes free on DIRECTORY's file system (plenty when it cannot be told)."""
    try:
        st = os.statvfs(directory)
    except OSError:
        return RESERVE_MAX_BYTES * 4
    return st.f_bavail * st.f_frsize


def _disk_room(reserve_path: str) -> int:
    """Bytes free for the journal's directory, counting a reserve file already there."""
    try:
        held = os.path.getsize(reserve_path)
    except OSError:
        held = 0
    return _free_bytes(os.path.dirname(reserve_path)) + held


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
    try:
        try:
            broker.open()
        except JournalCorrupt as exc:
            log.error("%s", exc)
            return 3
        except (OSError, zmq.ZMQError) as exc:
            log.error("broker cannot start: %s", exc)
            return 1
        return broker.run()
    finally:
        broker.close()


if __name__ == "__main__":
    sys.exit(main())
