"""The supervisor link's sockets and cadence: the identities, a child's DEALER,
sending without blocking, the reporting intervals, and the histograms workers
report. The messages themselves are common/link.py's types; their wire format
is written down once, in docs/internals.md ("Supervisor link")."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
import orjson
import zmq

from common import link
from common.link import Hist

log = logging.getLogger("common.internal")

# Upper bounds (seconds) of the two histograms workers report; +Inf is implied.
HISTOGRAM_BOUNDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Reports come on change, not on a clock (a Conferencing Node's CPU is its media capacity;
# every wake-up costs a cold cache): a child reports when a figure it reports has changed, at
# most once per REPORT_INTERVAL (a state change that raises or clears an alarm at once), and
# at least once per HEARTBEAT_INTERVAL even when nothing changed (so the supervisor can tell
# a quiet child from a wedged one, and a message it missed is repeated).
REPORT_INTERVAL = 0.25  # s: the least spacing between two change-driven reports
HEARTBEAT_INTERVAL = 5.0  # s: the longest a child stays silent when nothing changes
CHILD_GRACE = 5.0  # s a child gets to exit after shutdown/SIGTERM before SIGKILL
BROKER_IDENTITY = b"broker"


def worker_identity(sink: str) -> bytes:
    return b"sink:" + sink.encode()


def encode(msg: msgspec.Struct | dict[str, Any]) -> bytes:
    """One link frame: a common.link message (or its dict form) as JSON."""
    return msgspec.json.encode(msg)


def decode(frame: bytes) -> dict[str, Any]:
    """A link frame as a dict with a `type` (common.link.parse_report / parse_command type it)."""
    msg = orjson.loads(frame)
    if not isinstance(msg, dict) or "type" not in msg:
        raise ValueError("supervisor link message without a type")
    return msg


def connect_to_supervisor(ctx: zmq.Context, endpoint: str, identity: bytes) -> zmq.Socket:
    """A child's DEALER to the supervisor: never blocks the child, never lingers."""
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.IDENTITY, identity)
    sock.setsockopt(zmq.LINGER, 500)
    sock.setsockopt(zmq.SNDHWM, 100)
    sock.connect(endpoint)
    return sock


def send_nowait(sock: zmq.Socket, msg: msgspec.Struct | dict[str, Any]) -> bool:
    """Send a report; drop it (the next one follows soon) rather than block."""
    try:
        sock.send(encode(msg), zmq.NOBLOCK)
        return True
    except zmq.Again:
        return False


def commands(sock: zmq.Socket, where: str, limit: int = 100):
    """The commands waiting on a child's DEALER (up to LIMIT), without blocking.

    A frame that is not a command is logged (naming WHERE) and skipped: a bad
    message from the supervisor must not take a child down."""
    for _ in range(limit):
        try:
            frames = sock.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return
        try:
            yield link.parse_command(decode(frames[-1]))
        except link.UnknownCommand as exc:
            log.warning("%s: ignoring an %s", where, exc)
        except ValueError as exc:  # orjson.JSONDecodeError is a ValueError
            log.warning("%s: ignoring a malformed supervisor message (%s)", where, exc)


class Histogram:
    """A cumulative histogram over HISTOGRAM_BOUNDS, cheap to observe, reported as HIST."""

    __slots__ = ("counts", "sum", "count")

    def __init__(self) -> None:
        self.counts = [0] * len(HISTOGRAM_BOUNDS)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.sum += value
        self.count += 1
        for i, bound in enumerate(HISTOGRAM_BOUNDS):
            if value <= bound:
                self.counts[i] += 1
                break

    def snapshot(self) -> Hist:
        cumulative, running = [], 0
        for c in self.counts:
            running += c
            cumulative.append(running)
        return Hist(cumulative, self.sum, self.count)
