"""The states of a child (a sink's worker and its publisher, or the broker),
the transitions allowed between them, and the one function that moves a child
from one state to another (in the manner of supervisor's states.py).

    STARTING --first report "running"--> RUNNING
    STARTING/RUNNING --alarm--> STOPPED            (stop_publisher sent)
    STARTING/RUNNING/STOPPED --worker died--> CRASHED  (restart backoff bumped)
    CRASHED --backoff elapsed, or restart--> STARTING
    STOPPED/RUNNING/STARTING --restart--> STARTING

The broker goes through the same states: STARTING until its first report,
RUNNING, CRASHED when it dies unexpectedly (it is never STOPPED: no alarm
stops it).

`change_state` is the only code that assigns a child's `state`. A child is any
object with the attributes `name`, `state`, `state_since`, `state_reason`,
`publisher_running`, `restart_backoff` (a `common.backoff.Backoff`) and
`restart_at`, and optionally `label` for the log (agent/supervision/child.py's `Child`).
"""

from __future__ import annotations

import enum
import logging

log = logging.getLogger("agent.states")


class ChildState(enum.StrEnum):
    """A child's state as operators see it (`state` in docs/control-api.md): a sink's publisher, or the broker."""

    STARTING = "starting"  # a worker process is being started, or has not yet said its publisher runs
    RUNNING = "running"  # the worker reported its publisher running
    STOPPED = "stopped"  # an alarm stopped the publisher; the worker keeps counting the backlog
    CRASHED = "crashed"  # the worker died unexpectedly; it is restarted after its backoff


S = ChildState

# Publisher sending (or about to): what an alarm can stop.
STOPPABLE_STATES = frozenset({S.STARTING, S.RUNNING})
# Publisher sending as far as operators should care (gauge eventsink_publisher_running is RUNNING only).
RUNNING_STATES = frozenset({S.RUNNING})
# A worker process is meant to be alive in these states.
PROCESS_STATES = frozenset({S.STARTING, S.RUNNING, S.STOPPED})

TRANSITIONS: dict[ChildState, frozenset[ChildState]] = {
    S.STARTING: frozenset({S.RUNNING, S.STOPPED, S.CRASHED, S.STARTING}),
    S.RUNNING: frozenset({S.STOPPED, S.CRASHED, S.STARTING}),
    S.STOPPED: frozenset({S.STARTING, S.CRASHED}),
    S.CRASHED: frozenset({S.STARTING}),
}


class IllegalTransition(RuntimeError):
    """A state change the table forbids: a bug in the supervisor, never an operator mistake."""


def allowed(old: ChildState, new: ChildState) -> bool:
    return new in TRANSITIONS[old]


def change_state(slot, new: ChildState, reason: str, *, now: float) -> None:
    """Move SLOT to NEW (logging REASON); the only place a publisher state changes.

    Records when and why, keeps `publisher_running` in step, and on CRASHED
    counts a failure in the restart backoff and schedules the restart.
    """
    old = slot.state
    label = getattr(slot, "label", f"sink {slot.name}")
    if not allowed(old, new):
        log.error("BUG: %s: refused state change %s -> %s (%s)", label, old, new, reason)
        raise IllegalTransition(f"{label}: {old} -> {new} is not allowed ({reason})")
    slot.state = new
    slot.state_since = now
    slot.state_reason = reason
    slot.publisher_running = new in RUNNING_STATES
    if new is S.CRASHED:
        slot.restart_backoff = slot.restart_backoff.failed()
        slot.restart_at = now + slot.restart_backoff.capped()
        log.warning("%s: %s -> %s (%s); restart in %.3g s", label, old, new, reason, slot.restart_backoff.capped())
    else:
        slot.restart_at = None
        log.info("%s: %s -> %s (%s)", label, old, new, reason)
