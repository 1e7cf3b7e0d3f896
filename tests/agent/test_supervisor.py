"""Supervisor unit tests (fake launcher, fake clock, real ROUTER): startup,
the files it owns, states from reports, worker and broker restarts."""

import logging
import os
import socket
import stat
import sys

import pytest

from agent.client.errors import CommandError
from agent.supervision.supervisor import Supervisor
from common import config as config_mod
from common.internal import worker_identity
from tests.agent.supervisor_fakes import Rig, TestSupervisor, worker_report


@pytest.fixture
def rig():
    r = Rig(sinks=(("cdr", "Oslo", 2), ("siem", "Oslo", 1), ("london", "London", 2)))
    yield r
    r.close()


def started(rig):
    rig.start()
    return rig


# ---------------------------------------------------------------- startup


def test_start_spawns_broker_then_one_worker_per_local_sink(rig):
    started(rig)
    names = [c.name for c in rig.launcher.children]
    assert names == ["broker", "worker cdr", "worker siem"]
    broker, cdr, _ = rig.launcher.children
    assert broker.argv == [sys.executable, "-m", "bus.broker"]
    assert cdr.argv == [sys.executable, "-m", "sinks.worker"]
    config, sink = config_mod.decode_spec(cdr.stdin)
    assert sink == "cdr" and config.node.address == "10.44.99.2"
    assert config_mod.decode_spec(broker.stdin)[1] is None
    status = rig.ask("status")
    assert [s["name"] for s in status["sinks"]] == ["cdr", "siem"]
    assert status["node"] == {"address": "10.44.99.2", "location": "Oslo", "role": "transcoding"}
    assert all(s["state"] == "starting" for s in status["sinks"])
    assert status["sinks"][0]["pid"] == cdr.pid


def test_spec_carries_the_password_from_its_file_but_status_never_shows_it(rig):
    secret_path = os.path.join(rig.base, "cdr.secret")
    with open(secret_path, "w") as fh:
        fh.write("file-s3cret\n")
    os.chmod(secret_path, 0o600)
    rig.write(
        rig_text := open(rig.path)
        .read()
        .replace('name = "cdr"', f'name = "cdr"\nusername = "u"\npassword_file = "{secret_path}"')
    )
    assert "password_file" in rig_text
    rig.sup = TestSupervisor(
        rig.path,
        config_mod.load_or_raise(rig.path),
        launcher=rig.launcher,
        clock=rig.clock,
        journal_factory=rig._journal,
        serve=False,
    )
    started(rig)
    config, _ = config_mod.decode_spec(rig.launcher.current("cdr").stdin)
    assert config.sink_named("cdr").password == "file-s3cret"
    text = str(rig.ask("status"))
    assert "file-s3cret" not in text and "hunter2-pass" not in text
    assert rig.sink_status("cdr")["url"] == "http://127.0.0.1:9/cdr"


def test_cursors_ensured_for_local_sinks_and_others_dropped(rig):
    original = rig._journal

    def journal_with_rows(path):
        j = original(path)
        j.cursor_rows = {"cdr": 7, "gone": 3, "london": 5}
        return j

    rig.sup.journal_factory = journal_with_rows
    started(rig)
    assert rig.journal.cursors() == {"cdr": 7, "siem": 42}


def test_dirs_are_0750_and_locks_are_taken(rig):
    started(rig)
    for d in ("run", "state"):
        mode = stat.S_IMODE(os.stat(os.path.join(rig.base, d)).st_mode)
        assert mode & 0o007 == 0, oct(mode)
    assert os.path.exists(os.path.join(rig.base, "run", "agent.lock"))
    assert os.path.exists(os.path.join(rig.base, "state", "agent.lock"))
    assert os.path.exists(os.path.join(rig.base, "run", "supervisor.sock"))


def test_second_agent_on_same_dirs_exits_1_with_one_clear_line(rig, caplog):
    started(rig)
    other = TestSupervisor(
        rig.path, rig.sup.config, launcher=rig.launcher, clock=rig.clock, journal_factory=rig._journal, serve=False
    )
    spawned = len(rig.launcher.children)
    with caplog.at_level(logging.ERROR, logger="agent.supervisor"):
        assert other.run() == 1
    assert "another eventsink-agent is already running" in caplog.text
    assert len(rig.launcher.children) == spawned
    # the loser removed none of the running agent's sockets
    assert os.path.exists(os.path.join(rig.base, "run", "supervisor.sock"))


def test_refuses_a_control_socket_path_that_is_not_a_socket(rig, caplog):
    os.makedirs(os.path.join(rig.base, "run"), mode=0o750)
    with open(os.path.join(rig.base, "run", "control.sock"), "w") as fh:
        fh.write("not a socket")
    with caplog.at_level(logging.ERROR, logger="agent.supervisor"):
        assert rig.sup.run() == 1
    assert "exists and is not a socket" in caplog.text
    assert rig.launcher.children == []


def test_stale_control_socket_is_removed(rig):
    os.makedirs(os.path.join(rig.base, "run"), mode=0o750)
    path = os.path.join(rig.base, "run", "control.sock")
    s = socket.socket(socket.AF_UNIX)
    s.bind(path)
    s.close()  # bound, never listening: nobody answers
    started(rig)
    assert not os.path.exists(path)


def test_control_socket_in_use_is_refused(rig, caplog):
    os.makedirs(os.path.join(rig.base, "run"), mode=0o750)
    path = os.path.join(rig.base, "run", "control.sock")
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(path)
        s.listen(1)
        with caplog.at_level(logging.ERROR, logger="agent.supervisor"):
            assert rig.sup.run() == 1
        assert "in use by another process" in caplog.text
        assert os.path.exists(path)


# ---------------------------------------------------------------- states from reports


def test_first_running_report_makes_running(rig):
    started(rig)
    rig.report("cdr", "paused")
    assert rig.sink_status("cdr")["state"] == "starting"
    rig.report("cdr", "running", backlog=3, in_flight=1, delivered=9, failures=2, current_backoff=0.0)
    st = rig.sink_status("cdr")
    assert st["state"] == "running"
    assert (st["backlog"], st["in_flight"], st["delivered"], st["failures"]) == (3, 1, 9, 2)
    assert rig.slot("cdr").publisher_running


def test_reports_from_a_stale_pid_or_wrong_identity_are_ignored(rig):
    started(rig)
    rig.report("cdr", "running", pid=999999)
    assert rig.sink_status("cdr")["state"] == "starting"
    from tests.agent.supervisor_fakes import worker_report

    rig.link.inbox.append((worker_identity("siem"), worker_report("cdr", rig.launcher.current("cdr").pid)))
    rig.step()
    assert rig.sink_status("cdr")["state"] == "starting"


def test_malformed_link_messages_never_break_the_loop(rig):
    started(rig)
    pid = rig.launcher.current("cdr").pid
    for msg in (
        {"type": "hello"},
        {"type": "report", "role": "worker", "sink": "cdr", "pid": "x"},
        {"type": "report", "role": "alien"},
        {"type": "report", "role": "worker", "sink": "cdr", "pid": pid, "publisher": "running", "backlog": "lots"},
    ):
        rig.link.inbox.append((worker_identity("cdr"), msg))
    rig.step()
    assert rig.link.bad_messages == 4
    rig.report("cdr", "running")
    assert rig.sink_status("cdr")["state"] == "running"


def test_a_worker_report_without_publisher_is_a_bad_message(rig):
    started(rig)
    msg = worker_report("cdr", rig.launcher.current("cdr").pid)
    del msg["publisher"]
    rig.link.inbox.append((worker_identity("cdr"), msg))
    rig.step()
    assert rig.link.bad_messages == 1
    assert rig.sink_status("cdr")["state"] == "starting"


def test_unknown_command_is_a_400(rig):
    started(rig)
    with pytest.raises(CommandError) as err:
        rig.ask("dance")
    assert err.value.status == 400


# ---------------------------------------------------------------- worker restarts


def test_crashed_worker_restarts_after_backoff_with_a_fresh_process(rig):
    started(rig)
    rig.report("cdr", "running")
    first = rig.launcher.current("cdr")
    first.exit(-9)
    rig.step()
    st = rig.sink_status("cdr")
    assert st["state"] == "crashed" and st["pid"] is None
    rig.clock.advance(0.4)
    rig.step()
    assert rig.launcher.current("cdr") is first  # not yet: the first wait is 0.5 s
    rig.clock.advance(0.1)
    rig.step()
    second = rig.launcher.current("cdr")
    assert second is not first
    st = rig.sink_status("cdr")
    assert st["state"] == "starting" and st["pid"] == second.pid and st["restarts"] == 1
    rig.report("cdr", "running")
    assert rig.sink_status("cdr")["state"] == "running"


def crash_and_measure_wait(rig, name="cdr", limit=100.0):
    """Kill the current worker; return how long the supervisor waits before the next spawn."""
    child = rig.launcher.current(name)
    child.exit(1)
    rig.step()
    waited = 0.0
    while rig.launcher.current(name) is child and waited < limit:
        rig.clock.advance(0.25)
        waited += 0.25
        rig.step()
    return waited


def test_restart_backoff_doubles_is_capped_and_never_gives_up(rig):
    started(rig)
    waits = [crash_and_measure_wait(rig) for _ in range(10)]
    assert waits[:7] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0]
    assert waits[7:] == [30.0, 30.0, 30.0]
    assert rig.sink_status("cdr")["restarts"] == 10


def test_restart_backoff_resets_after_ten_seconds_of_running(rig):
    started(rig)
    assert [crash_and_measure_wait(rig) for _ in range(3)] == [0.5, 1.0, 2.0]
    rig.clock.advance(10.0)
    rig.step()
    assert crash_and_measure_wait(rig) == 0.5


def test_restart_storm_is_logged_on_support_events(rig, caplog):
    started(rig)
    with caplog.at_level(logging.WARNING, logger="support.events"):
        for _ in range(4):
            crash_and_measure_wait(rig)
        assert "restart storm" not in caplog.text
        crash_and_measure_wait(rig)
    storm = [r for r in caplog.records if "restart storm" in r.getMessage()]
    assert len(storm) == 1 and storm[0].name == "support.events" and "sink cdr" in storm[0].getMessage()
    assert rig.sink_status("cdr")["restarts"] == 5


def test_spawn_failure_counts_as_a_crash_and_is_retried(rig):
    started(rig)
    rig.launcher.current("cdr").exit(1)
    rig.step()
    rig.launcher.fail_next = OSError(24, "Too many open files")
    rig.clock.advance(0.5)
    rig.step()
    assert rig.sink_status("cdr")["state"] == "crashed"
    assert len(rig.launcher.of("cdr")) == 1
    rig.clock.advance(1.0)
    rig.step()
    assert len(rig.launcher.of("cdr")) == 2
    assert rig.sink_status("cdr")["state"] == "starting"


def test_broker_crash_is_restarted_and_its_counters_fold(rig):
    started(rig)
    rig.broker_report(received=10, rejected={"invalid_json": 2})
    first = rig.launcher.current("broker")
    first.exit(-9)
    rig.step()
    assert rig.ask("status")["bus"]["broker_pid"] is None
    rig.clock.advance(0.5)
    rig.step()
    second = rig.launcher.current("broker")
    assert second is not first
    rig.broker_report(received=3, rejected={"invalid_json": 1, "too_large": 4})
    bus = rig.ask("status")["bus"]
    assert bus["received"] == 13
    assert bus["rejected"] == {"invalid_json": 3, "too_large": 4}
    assert bus["broker_restarts"] == 1 and bus["broker_pid"] == second.pid


def test_counters_fold_across_worker_crashes(rig):
    started(rig)
    rig.report("cdr", delivered=5, failures=1)
    rig.launcher.current("cdr").exit(1)
    rig.step()
    assert rig.sink_status("cdr")["delivered"] == 5
    rig.clock.advance(0.5)
    rig.step()
    rig.report("cdr", delivered=2, failures=0)
    st = rig.sink_status("cdr")
    assert (st["delivered"], st["failures"]) == (7, 1)


def test_request_after_close_fails_at_once(rig):
    started(rig)
    rig.sup.close()
    future = rig.sup.request("status")
    with pytest.raises(CommandError) as err:
        future.result(timeout=0)
    assert err.value.status == 503


def test_real_supervisor_class_has_the_contract_signature():
    import inspect

    params = inspect.signature(Supervisor.__init__).parameters
    assert list(params)[:3] == ["self", "config_path", "config"]
    assert params["launcher"].kind is inspect.Parameter.KEYWORD_ONLY
    assert params["clock"].kind is inspect.Parameter.KEYWORD_ONLY
