"""Supervisor unit tests: reload by request and by SIGHUP; the plan it follows."""

import logging
import os
import signal

import pytest

from agent.client.errors import CommandError
from agent.supervision.reload import plan_reload
from common import config as config_mod
from tests.agent.supervisor_fakes import Rig, config_text

BASE_SINKS = (("a", "Oslo", 1), ("b", "Oslo", 2), ("c", "Oslo", 2))


@pytest.fixture
def rig():
    r = Rig(sinks=BASE_SINKS)
    r.start()
    for name in ("a", "b", "c"):
        r.report(name, "running")
    yield r
    r.close()


def test_reload_adds_changes_and_removes(rig):
    rig.write(sinks=(("b", "Oslo", 1), ("c", "Oslo", 2), ("d", "Oslo", 2)))
    old_a = rig.launcher.current("a")
    reply = rig.ask("reload")
    assert reply == {"reloaded": True, "added": ["d"], "changed": ["b"], "removed": ["a"]}
    # removed: shut down with its stop event, its cursor goes once it has exited
    assert rig.link.to("a", "shutdown") == [{"type": "shutdown", "stop_event": True}]
    assert [s["name"] for s in rig.ask("status")["sinks"]] == ["b", "c", "d"]
    assert "a" in rig.journal.cursors()
    old_a.exit(0)
    rig.step()
    assert "a" not in rig.journal.cursors()
    # added: cursor at the head, a worker of its own
    assert rig.journal.cursors()["d"] == 42
    assert rig.launcher.current("d").alive
    assert rig.sink_status("d")["state"] == "starting"
    # changed: an update that announces itself, carrying the new settings
    [update] = rig.link.to("b", "update")
    assert update["announce"] is True
    assert next(s for s in update["config"]["sink"] if s["name"] == "b")["version"] == 1
    assert rig.sink_status("b")["version"] == 1
    # unchanged: left alone
    assert rig.link.to("c", "update") == []
    assert rig.sink_status("c")["state"] == "running"


def test_tuning_change_updates_every_sink_quietly(rig):
    rig.write(sinks=BASE_SINKS, tuning="max_retry_backoff = 90")
    reply = rig.ask("reload")
    assert reply["changed"] == [] and reply["added"] == [] and reply["removed"] == []
    for name in ("a", "b", "c"):
        [update] = rig.link.to(name, "update")
        assert update["announce"] is False and update["config"]["tuning"]["max_retry_backoff"] == 90
    assert rig.sup.config.tuning.max_retry_backoff == 90


def test_same_file_again_changes_nothing(rig):
    reply = rig.ask("reload")
    assert reply == {"reloaded": True, "added": [], "changed": [], "removed": []}
    assert not [m for _, m in rig.link.sent if m["type"] in ("update", "shutdown")]


def test_bad_file_changes_nothing_and_lists_the_problems(rig):
    before = rig.sup.config
    rig.write(text="[node]\naddress = 'nope'\n[[sink]]\nname = 1\n")
    with pytest.raises(CommandError) as err:
        rig.ask("reload")
    exc = err.value
    assert exc.status == 400 and exc.message.startswith("config not reloaded:")
    assert exc.problems and all(rig.path in p for p in exc.problems)
    assert any("node.address" in p for p in exc.problems)
    assert rig.sup.config is before
    assert [s["name"] for s in rig.ask("status")["sinks"]] == ["a", "b", "c"]
    assert not [m for _, m in rig.link.sent if m["type"] in ("update", "shutdown")]


def test_missing_file_is_a_400_too(rig):
    os.unlink(rig.path)
    with pytest.raises(CommandError) as err:
        rig.ask("reload")
    assert err.value.status == 400 and "cannot read" in err.value.problems[0]


def test_agent_section_changes_wait_for_a_restart(rig, caplog):
    rig.write(sinks=BASE_SINKS, agent_extra="max_message_kb = 64")
    with caplog.at_level(logging.WARNING, logger="agent.supervisor"):
        reply = rig.ask("reload")
    assert reply["needs_restart"] == ["agent.max_message_kb"]
    assert rig.sup.config.agent.max_message_kb == 256
    assert "agent.max_message_kb changed" in caplog.text


def test_sighup_reloads_and_a_bad_file_is_only_logged(rig, caplog):
    rig.write(sinks=(("a", "Oslo", 1), ("b", "Oslo", 2)))
    rig.sup.loop.add_callback(rig.sup.on_signal, signal.SIGHUP)  # what its signal handler does
    rig.step()
    assert [s["name"] for s in rig.ask("status")["sinks"]] == ["a", "b"]
    rig.write(text="this is not toml [")
    with caplog.at_level(logging.ERROR, logger="agent.supervisor"):
        rig.sup.loop.add_callback(rig.sup.on_signal, signal.SIGHUP)  # what its signal handler does
        assert rig.step() is False
    assert "not valid TOML" in caplog.text and "config not reloaded" in caplog.text
    assert [s["name"] for s in rig.ask("status")["sinks"]] == ["a", "b"]


def test_update_missed_while_connecting_is_sent_on_the_next_report(rig):
    rig.link.unreachable.add(b"sink:b")
    rig.write(sinks=(("a", "Oslo", 1), ("b", "Oslo", 1), ("c", "Oslo", 2)))
    assert rig.ask("reload")["changed"] == ["b"]
    assert rig.link.to("b", "update") == []
    rig.link.unreachable.clear()
    rig.report("b", "running")
    [update] = rig.link.to("b", "update")
    assert update["announce"] is True
    rig.report("b", "running")
    assert len(rig.link.to("b", "update")) == 1


def test_readding_a_sink_waits_for_its_old_worker(rig):
    old = rig.launcher.current("a")
    rig.write(sinks=(("b", "Oslo", 2), ("c", "Oslo", 2)))
    rig.ask("reload")
    rig.write(sinks=BASE_SINKS)
    assert rig.ask("reload")["added"] == ["a"]
    assert rig.launcher.current("a") is old and rig.sink_status("a")["state"] == "starting"
    old.exit(0)
    rig.step()
    assert rig.launcher.current("a") is not old
    assert "a" in rig.journal.cursors()


def test_location_change_moves_sinks_in_and_out(rig):
    rig.write(sinks=BASE_SINKS + (("ldn", "London", 2),), node_extra='role = "transcoding"')
    text = open(rig.path).read().replace('location = "Oslo"\n', 'location = "London"\n', 1)
    rig.write(text=text)
    reply = rig.ask("reload")
    assert reply["added"] == ["ldn"] and sorted(reply["removed"]) == ["a", "b", "c"]


def test_plan_reload_is_pure():
    def cfg(**kw):
        return config_mod.parse(config_text("/tmp/esa-plan", **kw)).config

    old = cfg(sinks=BASE_SINKS)
    plan = plan_reload(old, cfg(sinks=(("a", "Oslo", 2), ("c", "Oslo", 2), ("z", "Elsewhere", 2))))
    assert (plan.added, plan.changed, plan.removed, plan.quiet_updates) == ([], ["a"], ["b"], [])
    plan = plan_reload(old, cfg(sinks=BASE_SINKS, tuning="cache_expiration = 5"))
    assert plan.quiet_updates == ["a", "b", "c"] and plan.changed == []
    moved = cfg(sinks=BASE_SINKS, agent_extra="max_journal_mb = 5")
    plan = plan_reload(old, moved)
    assert plan.needs_restart == ["agent.max_journal_mb"] and plan.config.agent == old.agent


def use_password_file(r: Rig) -> str:
    """Give sink cdr of R's config a username and a password_file (holding "old-pass"), load it; the file's path."""
    pw = os.path.join(r.base, "cdr.secret")
    with open(pw, "w") as fh:
        fh.write("old-pass\n")
    os.chmod(pw, 0o600)
    r.write(
        config_text(r.base).replace(
            'url = "http://user:hunter2-pass@127.0.0.1:9/cdr"',
            f'url = "http://127.0.0.1:9/cdr"\nusername = "u"\npassword_file = "{pw}"',
        )
    )
    r.sup.config = config_mod.load_or_raise(r.path)
    return pw


def test_reload_picks_up_a_rotated_password_file():
    """An operator rotates the password in password_file and reloads: the worker must get it."""
    r = Rig()
    try:
        pw = use_password_file(r)
        r.start()
        r.report("cdr", "running")
        assert r.ask("reload")["changed"] == []  # same file, same password: nothing to do
        assert r.link.to("cdr", "update") == []
        with open(pw, "w") as fh:
            fh.write("new-pass\n")
        assert r.ask("reload")["changed"] == ["cdr"]
        [update] = r.link.to("cdr", "update")
        assert next(s for s in update["config"]["sink"] if s["name"] == "cdr")["password"] == "new-pass"
        assert r.ask("reload")["changed"] == []  # applied once, not on every reload
    finally:
        r.close()


def test_rotated_password_reaches_a_worker_still_connecting():
    r = Rig()
    try:
        pw = use_password_file(r)
        r.start()
        r.link.unreachable.add(b"sink:cdr")  # not connected yet: the update cannot go now
        with open(pw, "w") as fh:
            fh.write("new-pass\n")
        assert r.ask("reload")["changed"] == ["cdr"]
        assert r.link.to("cdr", "update") == []
        r.link.unreachable.clear()
        r.report("cdr", "running")
        [update] = r.link.to("cdr", "update")
        assert next(s for s in update["config"]["sink"] if s["name"] == "cdr")["password"] == "new-pass"
    finally:
        r.close()
