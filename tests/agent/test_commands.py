"""The command registry, the reply envelope, the exit-code mapping and the renderers."""

from __future__ import annotations

import concurrent.futures
import json

import pytest

from agent.client.ctl import build_parser
from agent.client.errors import CommandError
from agent.client.render import format_seconds
from agent.commands.alarms import render_alarms
from agent.commands.client import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    Reply,
    Unreachable,
    UsageError,
    exit_code,
)
from agent.commands.registry import COMMANDS, command_named
from agent.commands.reload import render_reload
from agent.commands.restart import render_restart
from agent.commands.status import render_status
from agent.server.actions import registry as actions
from agent.server.actions import unit as action_unit
from agent.server.actions.registry import action_named
from agent.server.control import ROUTES
from tests.agent.control_fakes import ALARMS, STATUS, FakeSupervisor


def test_registry_names_and_routes_are_unique():
    names = [c.name for c in COMMANDS]
    assert len(names) == len(set(names))
    routes = [(c.method, c.path) for c in COMMANDS]
    assert len(routes) == len(set(routes))
    assert {n for n in names} >= {"status", "alarms", "restart", "reload", "schema"}


def test_contract_routes():
    assert {(c.method, c.path) for c in COMMANDS} == {
        ("GET", "/v1/status"),
        ("GET", "/v1/alarms"),
        ("POST", "/v1/sinks/{sink}/restart"),
        ("POST", "/v1/reload"),
        ("GET", "/v1/schema"),
        ("GET", "/v1/openapi.json"),
        ("POST", "/v1/sinks/{sink}/replay"),
        ("GET", "/v1/sinks/{sink}/dead-letters"),
        ("POST", "/v1/sinks/{sink}/dead-letters/redrive"),
        ("DELETE", "/v1/sinks/{sink}/dead-letters/{id}"),
        ("GET", "/v1/sinks/{sink}/attempts"),
        ("GET", "/v1/sinks/{sink}/deliveries"),
        ("GET", "/v1/deliveries"),
        ("GET", "/v1/config"),
    }


def test_server_routes_and_ctl_subcommands_come_from_the_registry():
    assert [c for c, _ in ROUTES] == list(COMMANDS)
    sub = next(a for a in build_parser()._actions if a.dest == "command_name")
    assert (
        set(sub.choices)
        == {c.name for c in COMMANDS if c.in_ctl}
        == {
            "status",
            "alarms",
            "restart",
            "reload",
            "replay",
            "attempts",
            "deliveries",
            "dead-letters",
            "redrive",
            "discard",
        }
    )


def test_fields_come_from_the_path():
    assert command_named("restart").fields == ("sink",)
    assert command_named("status").fields == ()


def test_path_pattern_and_request_path_round_trip():
    restart = command_named("restart")
    path = restart.request_path({"sink": "a/b c"})
    assert path == "/v1/sinks/a%2Fb%20c/restart"
    m = restart.path_pattern().match(path)
    assert m and m.group("sink") == "a%2Fb%20c"
    assert restart.path_pattern().match("/v1/sinks//restart") is None
    assert restart.path_pattern().match("/v1/sinks/x/y/restart") is None


def test_actions_call_the_supervisor():
    sup = FakeSupervisor()
    assert action_named("status").action(sup, {}) == STATUS
    assert action_named("alarms").action(sup, {}) == ALARMS
    assert action_named("restart").action(sup, {"sink": "cdr"}) == {"restarted": "cdr"}
    with pytest.raises(CommandError) as err:
        action_named("restart").action(sup, {"sink": "nope"})
    assert err.value.status == 404
    assert [c for c, _ in sup.calls] == ["status", "alarms", "restart", "restart"]


def test_ask_times_out_as_503(monkeypatch):
    monkeypatch.setattr(action_unit, "SUPERVISOR_TIMEOUT", 0.05)

    class Silent:
        def request(self, command, **params):
            return concurrent.futures.Future()

    with pytest.raises(CommandError) as err:
        actions.ask(Silent(), "status")
    assert err.value.status == 503


def test_schema_action_validates_format():
    with pytest.raises(CommandError) as err:
        action_named("schema").action(None, {"format": "xml"})
    assert err.value.status == 400
    assert json.loads(action_named("schema").action(None, {}))["openapi"].startswith("3.")


# ------------------------------------------------------------------ envelope and exit codes


@pytest.mark.parametrize(
    "outcome, code",
    [
        (Reply(200, {}), EXIT_OK),
        (Reply(204, None), EXIT_OK),
        (Reply(400, {"error": "bad"}), EXIT_FAILED),
        (Reply(404, {"error": "no such sink"}), EXIT_FAILED),
        (Reply(500, {"error": "x"}), EXIT_FAILED),
        (Reply(503, None), EXIT_FAILED),
        (Unreachable("agent not running"), EXIT_UNREACHABLE),
        (UsageError("bad --config"), EXIT_USAGE),
        (RuntimeError("anything else"), EXIT_FAILED),
    ],
)
def test_exit_code_mapping(outcome, code):
    assert exit_code(outcome) == code


def test_exit_codes_are_distinct():
    assert len({EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE}) == 4
    assert (EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE) == (0, 1, 2, 3)


def test_reply_error_and_problems():
    r = Reply(400, {"error": "the config has problems", "problems": ["a: x", "b: y"]})
    assert not r.ok and r.error == "the config has problems" and r.problems == ["a: x", "b: y"]
    r = Reply(502, "<html>")
    assert r.error == "the agent answered HTTP 502" and r.problems == []


# ------------------------------------------------------------------ rendering


def test_status_table_has_every_column_aligned():
    text = render_status(STATUS)
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("SINK"))
    for col in (
        "SINK",
        "STATE",
        "PID",
        "BACKLOG",
        "IN-FLIGHT",
        "DELIVERED",
        "FAILURES",
        "BACKOFF",
        "ALARMS",
        "LAST RESTART",
    ):
        assert col in header
    rows = lines[lines.index(header) + 1 :]
    assert len(rows) == 2
    # every column starts at the same offset in the header and in each row
    for col, value_cdr, value_siem in (("STATE", "running", "stopped"), ("BACKLOG", "3", "57"), ("BACKOFF", "-", "2m")):
        at = header.index(col)
        assert rows[0][at:].startswith(value_cdr), (col, rows[0])
        assert rows[1][at:].startswith(value_siem), (col, rows[1])
    assert "Eventsink Reached Maximum Backoff" in rows[1]
    assert "4242" in rows[0] and "1234" in rows[0]
    assert "10.44.99.2" in text


def test_status_without_sinks():
    assert "no sinks" in render_status({"node": {"address": "10.0.0.1"}, "sinks": []})


def test_status_never_shows_unknown_fields_as_crash():
    text = render_status({"sinks": [{"name": "x", "alarms": [{"name": "A"}], "current_backoff": "weird"}]})
    assert "x" in text and "A" in text


@pytest.mark.parametrize(
    "value, text",
    [
        (0, "-"),
        (None, "-"),
        (1, "1s"),
        (2.5, "2.5s"),
        (45, "45s"),
        (120, "2m"),
        (150, "2m30s"),
        (1800, "30m"),
        (3600, "1h"),
        (3900, "1h5m"),
    ],
)
def test_format_seconds(value, text):
    assert format_seconds(value) == text


def test_alarms_rendering():
    assert render_alarms([]) == "no active alarms"
    text = render_alarms(ALARMS)
    assert text.splitlines()[0].split() == ["ALARM", "SINK", "RAISED", "AT", "DETAIL"]
    assert "siem-long-name" in text and "max_retry_backoff" in text


def test_restart_and_reload_rendering():
    assert render_restart({"restarted": "cdr"}) == "restarted sink cdr"
    assert render_reload({}) == "config reloaded"
    assert render_reload({"added": ["a"], "removed": []}) == "config reloaded (added: a; removed: -)"


def test_a_concrete_path_wins_over_a_template_that_matches_it():
    from agent.server.control import _route

    command, params, allowed = _route("DELETE", "/v1/sinks/cdr/dead-letters/redrive")
    assert command is None and allowed == ["POST"]  # a wrong method, not a dead letter named "redrive"
    command, params, _ = _route("POST", "/v1/sinks/cdr/dead-letters/redrive")
    assert command.name == "redrive" and params == {"sink": "cdr"}
    command, params, _ = _route("DELETE", "/v1/sinks/cdr/dead-letters/abc-12")
    assert command.name == "discard" and params == {"sink": "cdr", "id": "abc-12"}
    assert _route("GET", "/v1/sinks/cdr/dead-letters/abc-12")[2] == ["DELETE"]
