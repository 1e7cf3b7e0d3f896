"""The messages of the supervisor link, as the types both ends use.

Owns the reports a child sends (`BrokerReport`, `WorkerReport`, with `Hist`
for a histogram snapshot), the answer a worker gives when asked
(`AttemptsAnswer`, of `AttemptEntry`s; `DeliveriesAnswer`, of `DeliveryEntry`s),
the POSTs a followed worker streams (`DeliveriesStreamed`), the commands the
supervisor sends (`StopPublisher`, `Update`, `Shutdown`, `Attempts`,
`Deliveries`, `FollowDeliveries`), and turning a decoded
frame into one of them (`parse_message`, `parse_report`, `parse_command`). What is on the socket is one frame
of JSON per message, written down in docs/internals.md ("Supervisor link");
the socket helpers and the reporting cadence are common/internal.py's.

A report is told from an answer and from a command by its `type`, a broker's
report from a worker's by its `role`; an answer's and a command's `type` is
its tag.
"""

from __future__ import annotations

from typing import Any

import msgspec

REPORT = "report"
ROLE_BROKER, ROLE_WORKER = "broker", "worker"


class Hist(msgspec.Struct):
    """A histogram snapshot: cumulative counts per bound of common.internal.HISTOGRAM_BOUNDS."""

    buckets: list[int]
    sum: float
    count: int


# ------------------------------------------------------------ child -> supervisor


class WorkerReport(msgspec.Struct, kw_only=True):
    """What a worker tells: its publisher's state, its queue and its cumulative counters."""

    type: str = REPORT
    role: str = ROLE_WORKER
    sink: str
    pid: int
    # One of common.vocabulary.PUBLISHER_STATES; required: a report without it is malformed
    # (a default would make a broken report move a starting sink to running).
    publisher: str
    backlog: int = 0
    in_flight: int = 0
    delivered: int = 0
    failures: int = 0
    current_backoff: float = 0.0
    next_backoff: float = 0.0
    cursor: int = 0  # the durable cursor
    head: int = 0
    dead_lettered: int = 0  # events this worker set aside as dead letters
    redriven: int = 0  # redriven dead letters this worker delivered
    attempts: dict[str, int] = msgspec.field(default_factory=dict)  # POST outcome -> count
    streaming: bool = False  # it streams each POST as sent (someone follows GET /v1/deliveries)
    post_duration: Hist | None = None
    event_age: Hist | None = None


class BrokerReport(msgspec.Struct, kw_only=True):
    """What the broker tells: events taken in and rejected, and the journal's state."""

    type: str = REPORT
    role: str = ROLE_BROKER
    pid: int
    received: int = 0
    rejected: dict[str, int] = msgspec.field(default_factory=dict)  # reject reason -> count
    journal_bytes: int = 0
    journal_full: bool = False
    head: int = 0
    transactions: int = 0  # journal transactions that committed events
    retained: int = 0  # delivered events kept in the journal for replay
    duplicates: int = 0  # numbered messages already journaled, dropped (docs/bus.md)


def parse_report(msg: dict) -> WorkerReport | BrokerReport:
    """A decoded link message as a typed report; raises ValueError when it is not one."""
    role = msg.get("role")
    try:
        if role == ROLE_WORKER:
            return msgspec.convert(msg, WorkerReport)
        if role == ROLE_BROKER:
            return msgspec.convert(msg, BrokerReport)
    except msgspec.ValidationError as exc:
        raise ValueError(f"bad {role} report: {exc}") from None
    raise ValueError(f"report with unknown role {str(role)[:40]!r}")


# ------------------------------------------------------------ child -> supervisor, when asked

ATTEMPTS_ANSWER = "attempts_answer"


class AttemptEntry(msgspec.Struct):
    """One POST attempt as `GET /v1/sinks/NAME/attempts` shows it (sinks/attempts.py makes it)."""

    at: str  # the end of the attempt, ISO 8601 UTC with milliseconds and Z
    seq: int  # the POST's seq (a bulk envelope: its first inner event's)
    events: int  # events inside
    webhook_id: str
    outcome: str  # one of common.vocabulary.POST_OUTCOMES
    status: int | None  # the HTTP status; None without an answer
    duration: float  # seconds
    detail: str  # a failure's reason, as support.events gives it; "HTTP 200" for a success


class AttemptsAnswer(msgspec.Struct, tag_field="type", tag=ATTEMPTS_ANSWER, kw_only=True):
    """A worker's answer to `Attempts`, with its token: its most recent POST attempts, newest first."""

    token: int
    sink: str
    attempts: list[AttemptEntry] = msgspec.field(default_factory=list)


DELIVERIES_ANSWER, DELIVERIES_STREAMED = "deliveries_answer", "deliveries_streamed"


class DeliveryEntry(msgspec.Struct):
    """One POST as sent, as `GET /v1/sinks/NAME/deliveries` shows it (sinks/deliveries.py makes it)."""

    at: str  # the end of the attempt, ISO 8601 UTC with milliseconds and Z
    webhook_id: str
    seq: int
    events: int
    outcome: str
    status: int | None
    duration: float
    headers: dict[str, str]  # the request headers given to libcurl, every secret as "***"
    body: str  # the JSON as sent (decompressed when gzip), every secret as "***"


class DeliveriesAnswer(msgspec.Struct, tag_field="type", tag=DELIVERIES_ANSWER, kw_only=True):
    """A worker's answer to `Deliveries`, with its token: its most recent POSTs as sent, newest first."""

    token: int
    sink: str
    deliveries: list[DeliveryEntry] = msgspec.field(default_factory=list)


class DeliveriesStreamed(msgspec.Struct, tag_field="type", tag=DELIVERIES_STREAMED, kw_only=True):
    """POSTs a followed worker completed since its last such message, oldest first."""

    sink: str
    deliveries: list[DeliveryEntry] = msgspec.field(default_factory=list)


Answer = AttemptsAnswer | DeliveriesAnswer | DeliveriesStreamed
ANSWERS: dict[str, type] = {
    ATTEMPTS_ANSWER: AttemptsAnswer,
    DELIVERIES_ANSWER: DeliveriesAnswer,
    DELIVERIES_STREAMED: DeliveriesStreamed,
}


def parse_message(msg: dict) -> WorkerReport | BrokerReport | Answer:
    """A decoded message from a child, typed by its `type`; raises ValueError when it is none of them."""
    kind = msg.get("type")
    if kind == REPORT:
        return parse_report(msg)
    cls = ANSWERS.get(kind)  # type: ignore[arg-type]
    if cls is not None:
        try:
            return msgspec.convert(msg, cls)
        except msgspec.ValidationError as exc:
            raise ValueError(f"bad {kind}: {exc}") from None
    raise ValueError(f"message type {str(kind)[:40]!r}")


# ------------------------------------------------------------ supervisor -> child


class StopPublisher(msgspec.Struct, tag_field="type", tag="stop_publisher"):
    """Worker: stop sending; keep reading the feed only to count the backlog."""


class Update(msgspec.Struct, tag_field="type", tag="update"):
    """Worker: apply new sink/tuning settings; `announce`: send eventsink_updated.

    `config` stays as decoded JSON: the worker checks it itself, so that an
    unusable config is told apart from a malformed message."""

    config: Any = None
    announce: bool = False


class Shutdown(msgspec.Struct, tag_field="type", tag="shutdown"):
    """Exit gracefully; `stop_event`: send eventsink_stopped / eventsink_ended first (best effort)."""

    stop_event: bool = False


class Attempts(msgspec.Struct, tag_field="type", tag="attempts"):
    """Worker: answer with an `AttemptsAnswer` of the same token: its LIMIT most recent POST attempts."""

    token: int
    limit: int = 50


class Deliveries(msgspec.Struct, tag_field="type", tag="deliveries"):
    """Worker: answer with a `DeliveriesAnswer` of the same token: its LIMIT most recent POSTs as sent."""

    token: int
    limit: int = 20


class FollowDeliveries(msgspec.Struct, tag_field="type", tag="follow_deliveries"):
    """Worker: `on`: stream each POST as sent once it completes (`DeliveriesStreamed`); off: stop."""

    on: bool = False


Command = StopPublisher | Update | Shutdown | Attempts | Deliveries | FollowDeliveries
COMMANDS: dict[str, type] = {
    "stop_publisher": StopPublisher,
    "update": Update,
    "shutdown": Shutdown,
    "attempts": Attempts,
    "deliveries": Deliveries,
    "follow_deliveries": FollowDeliveries,
}


class UnknownCommand(ValueError):
    """A supervisor message whose `type` names no command (a newer supervisor, or a bug)."""

    def __init__(self, kind: object):
        super().__init__(f"unknown supervisor message type {str(kind)[:40]!r}")
        self.kind = kind


def parse_command(msg: dict) -> Command:
    """A decoded link message as a command; UnknownCommand or ValueError when it is not one."""
    cls = COMMANDS.get(msg.get("type"))  # type: ignore[arg-type]
    if cls is None:
        raise UnknownCommand(msg.get("type"))
    try:
        return msgspec.convert(msg, cls)
    except msgspec.ValidationError as exc:
        raise ValueError(f"bad {msg['type']} command: {exc}") from None
