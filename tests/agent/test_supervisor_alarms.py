"""Supervisor unit tests: alarms stop publishers, restart clears them and
starts a fresh worker, the journal-full alarm comes and goes with the broker's
reports."""

import logging

import pytest

from agent.client.errors import CommandError
from common.internal import CHILD_GRACE
from common.vocabulary import AlarmName
from tests.agent.supervisor_fakes import Rig


@pytest.fixture
def rig():
    r = Rig(sinks=(("cdr", "Oslo", 2), ("siem", "Oslo", 1)), tuning="max_background_posts = 20\nmax_retry_backoff = 60")
    r.start()
    r.report("cdr", "running")
    r.report("siem", "running")
    yield r
    r.close()


def test_backoff_exceeded_raises_alarm_stops_publisher_and_logs_reason(rig, caplog):
    with caplog.at_level(logging.INFO):
        rig.report("cdr", "backoff_exceeded", next_backoff=64.0, current_backoff=32.0)
    st = rig.sink_status("cdr")
    assert st["state"] == "stopped" and st["alarms"] == [AlarmName.MAX_BACKOFF]
    assert not rig.slot("cdr").publisher_running
    assert rig.link.to("cdr", "stop_publisher") == [{"type": "stop_publisher"}]
    assert rig.link.to("siem", "stop_publisher") == []
    [alarm] = rig.ask("alarms")
    assert alarm["name"] == AlarmName.MAX_BACKOFF and alarm["sink"] == "cdr"
    assert alarm["raised_at"] == "2023-11-14T22:13:20.000Z"
    assert "64 s" in alarm["detail"] and "60 s" in alarm["detail"]
    lines = [r for r in caplog.records if r.name == "support.events" and AlarmName.MAX_BACKOFF in r.getMessage()]
    assert lines and "cdr" in lines[0].getMessage() and "stopping its publisher" in lines[0].getMessage()
    # the sibling is untouched
    assert rig.sink_status("siem")["state"] == "running"


def test_backlog_above_max_background_posts_raises_concurrency_alarm(rig):
    rig.report("cdr", "running", backlog=20)
    assert rig.sink_status("cdr")["alarms"] == []  # at the limit: fine
    rig.report("cdr", "running", backlog=21)
    st = rig.sink_status("cdr")
    assert st["alarms"] == [AlarmName.MAX_CONCURRENT_POSTS] and st["state"] == "stopped"
    assert len(rig.link.to("cdr", "stop_publisher")) == 1
    assert "21 events waiting" in rig.ask("alarms")[0]["detail"]


def test_a_second_alarm_on_a_stopped_sink_does_not_stop_it_again(rig):
    rig.report("cdr", "backoff_exceeded")
    rig.report("cdr", "paused", backlog=50)
    st = rig.sink_status("cdr")
    assert sorted(st["alarms"]) == sorted([AlarmName.MAX_BACKOFF, AlarmName.MAX_CONCURRENT_POSTS])
    assert st["state"] == "stopped"
    assert len(rig.link.to("cdr", "stop_publisher")) == 1
    rig.report("cdr", "paused", backlog=60)
    assert len(rig.ask("alarms")) == 2  # raising an active alarm again adds nothing


def test_stopped_worker_still_running_gets_stop_again_at_most_once_a_second(rig):
    rig.report("cdr", "backoff_exceeded")
    rig.report("cdr", "running")
    assert len(rig.link.to("cdr", "stop_publisher")) == 1
    rig.clock.advance(1.0)
    rig.report("cdr", "running")
    assert len(rig.link.to("cdr", "stop_publisher")) == 2
    rig.report("cdr", "paused")
    assert len(rig.link.to("cdr", "stop_publisher")) == 2


def test_restart_clears_alarms_and_starts_a_fresh_worker_after_the_old_one_exits(rig):
    rig.report("cdr", "backoff_exceeded")
    old = rig.launcher.current("cdr")
    rig.clock.w = 1_700_000_100.5
    assert rig.ask("restart", sink="cdr") == {"restarted": "cdr"}
    st = rig.sink_status("cdr")
    assert st["alarms"] == [] and rig.ask("alarms") == []
    assert st["last_attempted_restart"] == "2023-11-14T22:15:00.500Z"
    assert st["state"] == "starting"
    assert rig.link.to("cdr", "shutdown") == [{"type": "shutdown", "stop_event": False}]
    assert rig.launcher.current("cdr") is old  # the fresh one waits for the old one to go
    old.exit(0)
    rig.step()
    new = rig.launcher.current("cdr")
    assert new is not old and rig.sink_status("cdr")["pid"] == new.pid
    assert rig.sink_status("cdr")["restarts"] == 0  # an operator restart is not a crash restart
    rig.report("cdr", "running")
    assert rig.sink_status("cdr")["state"] == "running"


def test_restart_kills_an_old_worker_that_does_not_exit(rig):
    rig.launcher.exit_on_term = False
    old = rig.launcher.current("cdr")
    rig.ask("restart", sink="cdr")
    rig.clock.advance(CHILD_GRACE - 0.1)
    rig.step()
    assert old.signals == []
    rig.clock.advance(0.1)
    rig.step()
    assert old.signals == ["KILL"]
    rig.step()
    assert rig.launcher.current("cdr") is not old


def test_restart_of_a_crashed_sink_starts_at_once(rig):
    rig.launcher.current("cdr").exit(1)
    rig.step()
    assert rig.sink_status("cdr")["state"] == "crashed"
    n = len(rig.launcher.of("cdr"))
    rig.ask("restart", sink="cdr")
    assert len(rig.launcher.of("cdr")) == n + 1
    assert rig.sink_status("cdr")["state"] == "starting"


def test_restart_unknown_sink_is_404(rig):
    with pytest.raises(CommandError) as err:
        rig.ask("restart", sink="nope")
    assert err.value.status == 404 and "nope" in err.value.message


def test_restart_drains_a_backlog_built_while_stopped(rig):
    rig.report("cdr", "running", backlog=25)
    assert rig.sink_status("cdr")["state"] == "stopped"
    old = rig.launcher.current("cdr")
    rig.ask("restart", sink="cdr")
    old.exit(0)
    rig.step()
    # the fresh worker starts with the whole backlog: no alarm until it has drained below the limit
    rig.report("cdr", "running", backlog=25)
    assert rig.sink_status("cdr")["state"] == "running" and rig.ask("alarms") == []
    rig.report("cdr", "running", backlog=10)
    rig.report("cdr", "running", backlog=21)
    assert rig.sink_status("cdr")["alarms"] == [AlarmName.MAX_CONCURRENT_POSTS]


def test_worker_restarted_after_a_crash_stays_stopped_while_its_alarm_is_active(rig):
    rig.report("cdr", "backoff_exceeded")
    rig.launcher.current("cdr").exit(-9)
    rig.step()
    assert rig.sink_status("cdr")["state"] == "crashed"
    rig.clock.advance(0.5)
    rig.step()
    rig.report("cdr", "running")
    st = rig.sink_status("cdr")
    assert st["state"] == "stopped" and st["alarms"] == [AlarmName.MAX_BACKOFF]
    assert len(rig.link.to("cdr", "stop_publisher")) == 2


def test_journal_full_alarm_is_node_wide_and_cleared_by_the_broker(rig, caplog):
    with caplog.at_level(logging.INFO, logger="support.events"):
        rig.broker_report(journal_full=True, journal_bytes=3 * 1048576)
    [alarm] = rig.ask("alarms")
    assert alarm["name"] == AlarmName.JOURNAL_FULL and alarm["sink"] is None and "3.0 MiB" in alarm["detail"]
    assert rig.ask("status")["bus"]["journal_full"] is True
    assert all(s["state"] == "running" for s in rig.ask("status")["sinks"])
    assert rig.link.to("cdr", "stop_publisher") == []
    rig.broker_report(journal_full=False)
    assert rig.ask("alarms") == []
    assert "alarm cleared" in caplog.text and AlarmName.JOURNAL_FULL in caplog.text


def test_restart_is_refused_while_stopping(rig):
    rig.ask("shutdown")
    with pytest.raises(CommandError) as err:
        rig.ask("restart", sink="cdr")
    assert err.value.status == 503
