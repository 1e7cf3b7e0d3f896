"""The dead-letter commands (docs/delivery.md and docs/control-api.md): `dead-letters` lists a sink's
dead letters, `redrive` sends them (all, or some) again, `discard` deletes one
for good. Their work is agent/server/actions/dead_letters.py.
"""

from __future__ import annotations

from agent.client.render import cell, list_table, one_field
from agent.commands.unit import CliArg, Command

TYPE_CHECKING = False  # typing only for type checkers: eventsinkctl starts without it (agent/commands/__init__.py)
if TYPE_CHECKING:
    from typing import Any

SINK_HELP = (("sink", "the sink's name, as in the config"),)
IDS_HELP = "webhook-ids of the dead letters to send again; left out or empty: all of the sink's"


def render_dead_letters(body: Any) -> str:
    return list_table(
        body,
        "no dead letters",
        ["ID", "EVENT", "ACCEPTED AT", "ATTEMPTS", "STATUS", "REDRIVE", "DETAIL"],
        lambda d: [
            cell(d.get("id")),
            cell(d.get("event")),
            cell(d.get("accepted_at")),
            cell(d.get("attempts")),
            cell(d.get("status")),
            "yes" if d.get("redrive") else "-",
            cell(d.get("detail")),
        ],
    )


DEAD_LETTERS = Command(
    "dead-letters",
    "list a sink's dead letters (events set aside after dead_letter_after refusals)",
    "GET",
    "/v1/sinks/{sink}/dead-letters",
    render=render_dead_letters,
    field_help=SINK_HELP,
)

render_redrive = one_field("redriven", "{} dead letters redriven", "no dead letters to redrive")

REDRIVE = Command(
    "redrive",
    "send a sink's dead letters again (all, or those IDs), before its backlog",
    "POST",
    "/v1/sinks/{sink}/dead-letters/redrive",
    render=render_redrive,
    body=True,
    field_help=SINK_HELP,
    cli=(
        CliArg(
            ("ids",),
            "ids",
            "body",
            kwargs={"nargs": "*", "metavar": "ID", "help": "the dead letters' ids (webhook-ids); none: all"},
        ),
    ),
)

render_discard = one_field("discarded", "dead letter {} discarded", "discarded")

DISCARD = Command(
    "discard",
    "delete one of a sink's dead letters for good (logged with your uid)",
    "DELETE",
    "/v1/sinks/{sink}/dead-letters/{id}",
    render=render_discard,
    field_help=SINK_HELP + (("id", "the dead letter's id (its webhook-id)"),),
)
