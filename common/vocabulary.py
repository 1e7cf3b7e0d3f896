"""The words the processes share: the values one process writes and another
reads, or that two processes must spell alike (docs/internals.md lists them).

Owns, each as one `enum.StrEnum` (a member equals its string, so the wire, the
metrics labels and JSON carry the plain value): the publisher states a worker
reports, the reject reasons of the broker (label `reason`), the POST outcomes of
a worker (label `outcome`), the names of the events the agent makes itself, the
alarms, and the formats of the schema document. Code names a member; the tuples
give the documented order.
"""

from __future__ import annotations

import enum

# ------------------------------------------------------------ a worker's publisher (report field `publisher`)


class PublisherState(enum.StrEnum):
    """What a worker reports of its publisher (a sink's state as operators see it is agent/supervision/states.py's)."""

    RUNNING = "running"  # sending
    PAUSED = "paused"  # stopped by the supervisor (or started stopped): sends nothing, counts the backlog
    # After a failure the next wait would exceed max_retry_backoff: the worker stopped sending by
    # itself and waits for the supervisor to raise the alarm and answer stop_publisher.
    BACKOFF_EXCEEDED = "backoff_exceeded"


PUBLISHER_STATES = tuple(PublisherState)

# ------------------------------------------------------------ reject reasons (eventsink_bus_rejected_total)


class RejectReason(enum.StrEnum):
    """Why the broker refused a bus message (label `reason`); a member equals its string value."""

    FRAME_COUNT = "frame_count"
    TOO_LARGE = "too_large"
    INVALID_UTF8 = "invalid_utf8"
    INVALID_JSON = "invalid_json"
    NOT_OBJECT = "not_object"
    UNKNOWN_EVENT = "unknown_event"
    RESERVED_EVENT = "reserved_event"  # an eventsink_* name: those are the agent's own
    TOPIC_MISMATCH = "topic_mismatch"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    # The broker's, never the validator's: the journal cannot take the message now (at the
    # bound or on a full disk), or ever (larger than the bound allows).
    JOURNAL_FULL = "journal_full"


REJECT_REASONS = tuple(RejectReason)

# ------------------------------------------------------------ POST outcomes (label `outcome`)


class PostOutcome(enum.StrEnum):
    """How one POST ended (label `outcome`), in the documented order."""

    SUCCESS = "success"  # a 2xx answer
    HTTP_ERROR = "http_error"  # any other status (redirects aside)
    TIMEOUT = "timeout"
    CONNECTION_ERROR = "connection_error"
    TLS_ERROR = "tls_error"
    REDIRECT = "redirect"  # a 3xx: never followed


POST_OUTCOMES = tuple(PostOutcome)

# ------------------------------------------------------------ the agent's own events

RESERVED_PREFIX = "eventsink_"  # no conference process may publish a name starting with this


class AgentEvent(enum.StrEnum):
    """The events the agent makes itself (docs/events.md); each name starts with RESERVED_PREFIX."""

    STARTED = "eventsink_started"  # a publisher started: always seq 1
    UPDATED = "eventsink_updated"  # a reload changed the sink's settings
    STOPPED = "eventsink_stopped"  # version 1: the sink was removed or the agent stops
    ENDED = "eventsink_ended"  # version 2: the same
    BULK = "eventsink_bulk"  # the envelope around a batch in bulk mode


LIFECYCLE_EVENTS = (AgentEvent.STARTED, AgentEvent.UPDATED, AgentEvent.STOPPED, AgentEvent.ENDED)
LIFECYCLE_EVENTS_OF_VERSION = {
    1: (AgentEvent.STARTED, AgentEvent.UPDATED, AgentEvent.STOPPED),
    2: (AgentEvent.STARTED, AgentEvent.UPDATED, AgentEvent.ENDED),
}


def stop_event(version: int) -> str:
    """The stop event's name: Pexip's name for each protocol version."""
    return AgentEvent.STOPPED if version == 1 else AgentEvent.ENDED


# ------------------------------------------------------------ alarms (the control API's `alarms`, label `alarm`)


class AlarmName(enum.StrEnum):
    """The alarms the supervisor raises; the values are what operators see and match on."""

    MAX_BACKOFF = "Eventsink Reached Maximum Backoff"  # per sink
    MAX_CONCURRENT_POSTS = "Eventsink Reached Maximum Concurrent POSTs"  # per sink
    JOURNAL_FULL = "Eventsink Journal Full"  # node-wide: the journal refuses events


SINK_ALARMS = (AlarmName.MAX_BACKOFF, AlarmName.MAX_CONCURRENT_POSTS)
NODE_ALARMS = (AlarmName.JOURNAL_FULL,)

# ------------------------------------------------------------ the schema document


class SchemaFormat(enum.StrEnum):
    """The formats of `eventsink-agent schema` and GET /v1/schema."""

    OPENAPI = "openapi"  # OpenAPI 3.x JSON, the default
    SWAGGER = "swagger"  # Swagger 2.0 JSON


SCHEMA_FORMATS = tuple(SchemaFormat)
DEFAULT_SCHEMA_FORMAT = SchemaFormat.OPENAPI
