"""Each control command as one unit: its work on the main loop (`run`, called
here directly on a supervisor with fakes, no queue in between), the error
envelope every malformed request gets, and the broker's states in status."""

from __future__ import annotations

import json
import logging
import signal

import pytest

from agent.client.errors import CommandError
from agent.commands.registry import COMMANDS, LOOP_COMMANDS
from agent.server.actions.registry import (
    ACTIONS,
    ALARMS,
    RELOAD,
    RESTART,
    SCHEMA,
    SHUTDOWN,
    STATUS,
    action_of,
    unpaired,
)
from agent.server.control import ControlServer
from tests.agent.supervisor_fakes import Rig


@pytest.fixture
def rig():
    with Rig(sinks=(("cdr", "Oslo", 2), ("siem", "Oslo", 1))) as r:
        yield r.start()


def test_every_loop_command_has_work_help_and_a_renderer():
    for command in LOOP_COMMANDS:
        assert command.help and callable(command.render)
        action = action_of(command)
        assert (action.execute is None) != (action.serve is None), command.name  # one place it runs
    assert SHUTDOWN.command not in COMMANDS  # not a route: signals and the agent itself give it


def test_every_description_has_exactly_one_action_and_they_agree():
    assert unpaired() == []
    assert len({a.name for a in ACTIONS}) == len(ACTIONS) == len(LOOP_COMMANDS)
    assert [a.command for a in ACTIONS if a.body is not None] == [c for c in LOOP_COMMANDS if c.body]


# ---------------------------------------------------------------- status


def test_status_shows_sinks_and_the_broker_state(rig):
    body = STATUS.run(rig.sup, {})
    assert [s["name"] for s in body["sinks"]] == ["cdr", "siem"]
    assert body["bus"]["state"] == "starting" and body["bus"]["broker_pid"] == rig.launcher.current("broker").pid
    rig.broker_report()
    assert STATUS.run(rig.sup, {})["bus"]["state"] == "running"
    assert "bus:" in STATUS.command.render(body) and "cdr" in STATUS.command.render(body)


def test_broker_crash_and_restart_move_its_state(rig):
    rig.broker_report()
    rig.launcher.current("broker").exit(1)
    rig.step()
    assert STATUS.run(rig.sup, {})["bus"]["state"] == "crashed"
    broker = rig.sup.fleet.broker
    assert broker.restart_backoff.failures == 1  # the one Backoff policy, bumped by change_state
    rig.clock.advance(broker.restart_at - rig.clock.monotonic())
    rig.step()
    bus = STATUS.run(rig.sup, {})["bus"]
    assert bus["state"] == "starting" and bus["broker_restarts"] == 1


# ---------------------------------------------------------------- alarms


def test_alarms_lists_the_active_ones(rig):
    assert ALARMS.run(rig.sup, {}) == []
    rig.broker_report(journal_full=True)
    [alarm] = ALARMS.run(rig.sup, {})
    assert alarm["sink"] is None and "ALARM" in ALARMS.command.render([alarm])


# ---------------------------------------------------------------- restart


def test_restart_gives_a_fresh_worker(rig):
    rig.report("cdr")
    first = rig.launcher.current("cdr")
    assert RESTART.run(rig.sup, {"sink": "cdr"}) == {"restarted": "cdr"}
    assert rig.link.to("cdr", "shutdown")
    first.exit(0)
    rig.step()
    assert rig.launcher.current("cdr") is not first
    assert RESTART.command.render({"restarted": "cdr"}) == "restarted sink cdr"


def test_restart_of_an_unknown_sink_is_404_and_refused_while_stopping(rig):
    with pytest.raises(CommandError) as err:
        RESTART.run(rig.sup, {"sink": "nope"})
    assert err.value.status == 404
    SHUTDOWN.run(rig.sup, {})
    with pytest.raises(CommandError) as err:
        RESTART.run(rig.sup, {"sink": "cdr"})
    assert err.value.status == 503


# ---------------------------------------------------------------- reload


def test_reload_applies_a_complete_plan(rig):
    rig.write(sinks=(("cdr", "Oslo", 1), ("new", "Oslo", 2)))
    reply = RELOAD.run(rig.sup, {})
    assert reply == {"reloaded": True, "added": ["new"], "changed": ["cdr"], "removed": ["siem"]}
    assert "new" in rig.sup.fleet.sinks and "siem" not in rig.sup.fleet.sinks
    assert "added: new" in RELOAD.command.render(reply)


def test_reload_of_a_bad_file_changes_nothing(rig):
    rig.write(text="[node\n")
    with pytest.raises(CommandError) as err:
        RELOAD.run(rig.sup, {})
    assert err.value.status == 400 and err.value.problems
    assert list(rig.sup.fleet.sinks) == ["cdr", "siem"]


def test_sighup_queues_the_reload_command_and_logs_its_outcome(rig, caplog):
    rig.write(sinks=(("cdr", "Oslo", 2),))
    with caplog.at_level(logging.INFO, logger="agent.supervisor"):
        rig.sup.loop.add_callback(rig.sup.on_signal, signal.SIGHUP)  # what its signal handler does
        rig.step()
    assert list(rig.sup.fleet.sinks) == ["cdr"]
    assert "SIGHUP: " in caplog.text


# ---------------------------------------------------------------- shutdown and schema


def test_shutdown_begins_the_graceful_stop_once(rig):
    assert SHUTDOWN.run(rig.sup, {"why": "SIGTERM"}) == {"stopping": True}
    assert rig.sup.stopping
    assert SHUTDOWN.run(rig.sup, {}) == {"stopping": True}  # already stopping: nothing new
    assert all(rig.link.to(name, "shutdown") for name in ("cdr", "siem"))


def test_sigterm_queues_the_shutdown_command(rig):
    rig.sup.loop.add_callback(rig.sup.on_signal, signal.SIGTERM)  # what its signal handler does
    rig.step()
    assert rig.sup.stopping


def test_schema_is_answered_on_the_server_thread():
    # No supervisor at all: the server thread answers it without the main loop.
    assert json.loads(SCHEMA.action(None, {"format": "swagger"}))["swagger"] == "2.0"


# ---------------------------------------------------------------- the one error envelope


@pytest.mark.parametrize(
    "method,target,body,status",
    [
        ("GET", "/v1/nope", b"", 404),  # unknown route
        ("DELETE", "/v1/status", b"", 405),  # wrong method
        ("POST", "/v1/reload", b"{not json", 400),  # malformed body
        ("POST", "/v1/reload", b"[1, 2]", 400),  # a body that is not an object
    ],
)
def test_every_bad_request_gets_the_one_error_envelope(method, target, body, status):
    server = ControlServer("/nonexistent/c.sock", supervisor=None)
    got, payload, _ = server.dispatch(method, target, body)
    doc = json.loads(payload)
    assert got == status
    assert set(doc) <= {"error", "problems"} and isinstance(doc["error"], str) and doc["error"]


def test_a_removed_sink_named_broker_does_not_hold_back_the_broker_restart():
    with Rig(sinks=(("broker", "Oslo", 2), ("cdr", "Oslo", 2))) as r:
        r.start()
        r.write(sinks=(("cdr", "Oslo", 2),))
        RELOAD.run(r.sup, {})  # the worker of sink "broker" is still shutting down
        assert r.sup.fleet.removed
        r.launcher.current("broker").exit(1)
        r.step()
        r.clock.advance(r.sup.fleet.broker.restart_at - r.clock.monotonic())
        r.step()
        assert STATUS.run(r.sup, {})["bus"]["broker_restarts"] == 1
