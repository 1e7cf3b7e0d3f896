"""`replay` on the main loop (docs/delivery.md and docs/control-api.md,
`POST /v1/sinks/NAME/replay`).

The answer counts the retained events (delivered, still in the journal)
accepted at or after `since`. Unless it is a dry run, the sink's publisher is
then restarted as `restart` does, and its next worker starts just below the
first of them: it sends them again in journal order, with their original
`webhook-id` (epoch and offset), then the backlog and live events. The cursor
is moved only between two workers (agent/supervision/fleet.py), so no worker can commit
its old cursor over it; a second replay before that happens simply wins.
"""

from __future__ import annotations

import logging
import sqlite3
from typing import Annotated, Any

import msgspec

from agent.client.errors import CommandError
from agent.commands import replay as command
from agent.server.actions.restart import restart_publisher
from agent.server.actions.unit import BODY, Action, sink_child
from agent.supervision.child import ReplayStart
from bus import shadow_marks
from common.config_types import Paths
from common.timespec import iso_utc, parse_time

log = logging.getLogger("agent.supervisor")


class ReplayBody(msgspec.Struct, forbid_unknown_fields=False):
    """The body of a replay request."""

    since: Annotated[float | str, msgspec.Meta(description=command.SINCE_HELP)]
    dry_run: Annotated[bool, msgspec.Meta(description=command.DRY_RUN_HELP)] = False


def replay(supervisor: Any, params: dict[str, Any]) -> dict:
    child = sink_child(supervisor, params)
    body: ReplayBody = params[BODY]
    try:
        since = parse_time(body.since, supervisor.clock.wall())
    except ValueError as exc:
        raise CommandError(400, str(exc)) from None
    journal = supervisor.fleet.journal
    shadow_file = shadow_marks.shadow_path(Paths.of(supervisor.config).state_dir, child.name)
    try:
        committed = journal.cursors().get(child.name, 0)
        # Acknowledged since the worker's last commit (at most a second ago) counts as delivered too.
        cursor = shadow_marks.peek_mark(shadow_file, journal.epoch, committed)
        window = journal.replay_window(child.name, since, cursor=cursor)
    except sqlite3.Error as exc:
        raise CommandError(500, f"the journal cannot be read: {exc}") from None
    answer = {
        "events": window.events,
        "since": iso_utc(since),
        "oldest_retained": None if window.oldest_retained is None else iso_utc(window.oldest_retained),
    }
    if body.dry_run:
        return {**answer, "dry_run": True}
    if window.first_offset is not None:
        child.replay_start = ReplayStart(window.first_offset, shadow_file)
    log.info("sink %s: replay of %d events accepted since %s requested", child.name, window.events, answer["since"])
    restart_publisher(supervisor, child, "replay")
    return {**answer, "dry_run": False}


REPLAY = Action(command.REPLAY, replay, body=ReplayBody, refused_while_stopping=True)
