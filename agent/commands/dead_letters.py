"""The dead-letter commands (docs/delivery.md and docs/control-api.md): `dead-letters` lists a sink's
dead letters, `redrive` sends them (all, or some) again, `discard` deletes one
for good.

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

from common.logs import SUPPORT
from common.timespec import iso_utc
from agent.commands.restart import restart_publisher
from agent.commands.unit import BODY, CALLER_UID, CliArg, Command, sink_child
from agent.errors import CommandError
from agent.render import cell, list_table, one_field

support = logging.getLogger(SUPPORT)
SINK_HELP = (("sink", "the sink's name, as in the config"),)


def _journal(supervisor: Any, what: str, fn):
    try:
        return fn(supervisor.fleet.journal)
    except sqlite3.Error as exc:
        raise CommandError(500, f"{what}: the journal refused: {exc}") from None


# ------------------------------------------------------------ list


def dead_letters(supervisor: Any, params: dict[str, Any]) -> list:
    child = sink_child(supervisor, params)
    rows = _journal(supervisor, "cannot list the dead letters", lambda j: j.dead_letters(child.name))
    return [{"id": r.id, "event": r.event, "accepted_at": iso_utc(r.accepted_at), "attempts": r.attempts,
             "status": r.status, "detail": r.detail, "redrive": bool(r.redrive)} for r in rows]


def render_dead_letters(body: Any) -> str:
    return list_table(body, "no dead letters", ["ID", "EVENT", "ACCEPTED AT", "ATTEMPTS", "STATUS", "REDRIVE", "DETAIL"],
                      lambda d: [cell(d.get("id")), cell(d.get("event")), cell(d.get("accepted_at")),
                                 cell(d.get("attempts")), cell(d.get("status")), "yes" if d.get("redrive") else "-",
                                 cell(d.get("detail"))])


DEAD_LETTERS = Command(
    "dead-letters", "list a sink's dead letters (events set aside after dead_letter_after refusals)",
    "GET", "/v1/sinks/{sink}/dead-letters", dead_letters, render_dead_letters, field_help=SINK_HELP,
)


# ------------------------------------------------------------ redrive


class RedriveBody(msgspec.Struct):
    """The body of a redrive request."""

    ids: Annotated[list[str], msgspec.Meta(description="webhook-ids of the dead letters to send again; "
                                           "left out or empty: all of the sink's")] = []


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
    supervisor.publishers.refresh_dead_letters()
    return {"redriven": count}


render_redrive = one_field("redriven", "{} dead letters redriven", "no dead letters to redrive")


REDRIVE = Command(
    "redrive", "send a sink's dead letters again (all, or those IDs), before its backlog",
    "POST", "/v1/sinks/{sink}/dead-letters/redrive", redrive, render_redrive, body=RedriveBody,
    field_help=SINK_HELP,
    cli=(CliArg(("ids",), "ids", "body", kwargs={"nargs": "*", "metavar": "ID",
                                                  "help": "the dead letters' ids (webhook-ids); none: all"}),),
    refused_while_stopping=True,
)


# ------------------------------------------------------------ discard


def discard(supervisor: Any, params: dict[str, Any]) -> dict:
    child = sink_child(supervisor, params)
    letter = str(params.get("id", ""))
    if not _journal(supervisor, "cannot discard", lambda j: j.discard_dead_letter(child.name, letter)):
        raise CommandError(404, f"sink {child.name} has no dead letter {letter[:80]!r}")
    uid = params.get(CALLER_UID)
    support.warning("sink %s: dead letter %s discarded for good by uid %s", child.name, letter,
                    "unknown" if uid is None else uid)
    supervisor.publishers.refresh_dead_letters()
    return {"discarded": letter}


render_discard = one_field("discarded", "dead letter {} discarded", "discarded")


DISCARD = Command(
    "discard", "delete one of a sink's dead letters for good (logged with your uid)",
    "DELETE", "/v1/sinks/{sink}/dead-letters/{id}", discard, render_discard,
    field_help=SINK_HELP + (("id", "the dead letter's id (its webhook-id)"),), wants_caller=True,
)
