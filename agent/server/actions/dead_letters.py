"""The dead-letter commands on the main loop (docs/delivery.md and docs/control-api.md).

Dead letters live in the journal (bus/journal.py's dead-letter table), so the
supervisor reads and marks them on its own journal handle. A redrive marks the
rows and restarts the sink's publisher as `restart` does: its next worker sends
the marked ones first, in their original order, with new `seq`s and their
original `webhook-id`, then the backlog; a marked row is deleted only once it
is delivered, so a crash in between sends it again rather than losing it. A
discard is logged on support.events with the caller's uid (SO_PEERCRED).
"""

from __future__ import annotations

import logging
import sqlite3
from typing import Annotated, Any

import msgspec

from agent.client.errors import CommandError
from agent.commands import dead_letters as command
from agent.server.actions.restart import restart_publisher
from agent.server.actions.unit import BODY, CALLER_UID, Action, sink_child
from common.logs import SUPPORT
from common.timespec import iso_utc

support = logging.getLogger(SUPPORT)


def _journal(supervisor: Any, what: str, fn):
    try:
        return fn(supervisor.fleet.journal)
    except sqlite3.Error as exc:
        raise CommandError(500, f"{what}: the journal refused: {exc}") from None


def dead_letters(supervisor: Any, params: dict[str, Any]) -> list:
    child = sink_child(supervisor, params)
    rows = _journal(supervisor, "cannot list the dead letters", lambda j: j.dead_letters(child.name))
    return [
        {
            "id": r.id,
            "event": r.event,
            "accepted_at": iso_utc(r.accepted_at),
            "attempts": r.attempts,
            "status": r.status,
            "detail": r.detail,
            "redrive": bool(r.redrive),
        }
        for r in rows
    ]


DEAD_LETTERS = Action(command.DEAD_LETTERS, dead_letters)


class RedriveBody(msgspec.Struct):
    """The body of a redrive request."""

    ids: Annotated[list[str], msgspec.Meta(description=command.IDS_HELP)] = []


def redrive(supervisor: Any, params: dict[str, Any]) -> dict:
    child = sink_child(supervisor, params)
    ids = list(params[BODY].ids)
    try:
        count = _journal(supervisor, "cannot redrive", lambda j: j.mark_redrive(child.name, ids or None))
    except KeyError as exc:
        raise CommandError(404, f"sink {child.name} has no dead letter {str(exc.args[0])[:80]!r}") from None
    if count:
        support.warning("sink %s: %d dead letters redriven (sent again before the backlog)", child.name, count)
        restart_publisher(supervisor, child, "redrive")
    supervisor.reports.refresh_dead_letters()
    return {"redriven": count}


REDRIVE = Action(command.REDRIVE, redrive, body=RedriveBody, refused_while_stopping=True)


def discard(supervisor: Any, params: dict[str, Any]) -> dict:
    child = sink_child(supervisor, params)
    letter = str(params.get("id", ""))
    if not _journal(supervisor, "cannot discard", lambda j: j.discard_dead_letter(child.name, letter)):
        raise CommandError(404, f"sink {child.name} has no dead letter {letter[:80]!r}")
    uid = params.get(CALLER_UID)
    support.warning(
        "sink %s: dead letter %s discarded for good by uid %s", child.name, letter, "unknown" if uid is None else uid
    )
    supervisor.reports.refresh_dead_letters()
    return {"discarded": letter}


DISCARD = Action(command.DISCARD, discard, wants_caller=True)
