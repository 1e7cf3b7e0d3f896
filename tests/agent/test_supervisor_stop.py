"""Supervisor unit tests: the graceful stop (workers, then the broker, within
the budget), real signals through the wake-up pipe, and run() end to end with
fake children."""

import os
import signal
import threading
import time

import pytest

from agent.supervision.fleet import STOP_BUDGET
from agent.supervision.processes import SystemClock
from common.internal import CHILD_GRACE
from tests.agent.supervisor_fakes import Rig, TestSupervisor


@pytest.fixture
def rig():
    r = Rig(sinks=(("cdr", "Oslo", 2), ("siem", "Oslo", 1)))
    r.start()
    r.report("cdr", "running")
    r.report("siem", "running")
    yield r
    r.close()


def test_stop_shuts_workers_down_with_stop_event_then_terminates_broker(rig):
    broker = rig.launcher.current("broker")
    cdr, siem = rig.launcher.current("cdr"), rig.launcher.current("siem")
    assert rig.ask("shutdown") == {"stopping": True}
    assert rig.link.to("cdr", "shutdown") == [{"type": "shutdown", "stop_event": True}]
    assert rig.link.to("siem", "shutdown") == [{"type": "shutdown", "stop_event": True}]
    assert broker.signals == []  # the broker outlives the workers
    cdr.exit(0)
    assert rig.step() is False and broker.signals == []
    siem.exit(0)
    rig.step()
    assert broker.signals == ["TERM"]
    assert rig.step() is True
    # nothing was restarted on the way down
    assert len(rig.launcher.children) == 3


def test_stragglers_are_killed_and_the_stop_fits_the_budget(rig):
    rig.launcher.exit_on_term = False
    for c in rig.launcher.children:
        c.exit_on_term = False
    t0 = rig.clock.monotonic()
    rig.ask("shutdown")
    broker = rig.launcher.current("broker")
    done = False
    for _ in range(200):
        rig.clock.advance(0.1)
        if rig.step():
            done = True
            break
    assert done
    assert all(c.signals[-1] == "KILL" for c in rig.launcher.children)
    assert broker.signals == ["TERM", "KILL"]
    assert rig.clock.monotonic() - t0 <= STOP_BUDGET + 0.2
    assert rig.clock.monotonic() - t0 >= CHILD_GRACE


def test_crashed_sink_is_not_restarted_during_stop(rig):
    rig.launcher.current("cdr").exit(1)
    rig.step()
    rig.ask("shutdown")
    rig.launcher.current("siem").exit(0)
    for _ in range(5):
        rig.clock.advance(1.0)
        rig.step()
    assert len(rig.launcher.of("cdr")) == 1


def test_status_still_answers_while_stopping(rig):
    rig.ask("shutdown")
    assert [s["name"] for s in rig.ask("status")["sinks"]] == ["cdr", "siem"]


def test_close_removes_socket_files_and_releases_the_locks(rig):
    sock = os.path.join(rig.base, "run", "supervisor.sock")
    assert os.path.exists(sock)
    rig.sup.close()
    assert not os.path.exists(sock)
    again = TestSupervisor(
        rig.path, rig.sup.config, launcher=rig.launcher, clock=rig.clock, journal_factory=rig._journal, serve=False
    )
    again.start()  # the locks are free again
    again.close()


def test_real_signals_only_enqueue_and_wake_the_loop(rig):
    """SIGHUP and SIGTERM sent to this process reach the loop through the wake-up pipe."""
    rig.write(sinks=(("cdr", "Oslo", 2),))
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    rig.sup.install_signals()
    try:
        os.kill(os.getpid(), signal.SIGHUP)
        rig.step()
        assert [s["name"] for s in rig.ask("status")["sinks"]] == ["cdr"]
        os.kill(os.getpid(), signal.SIGTERM)
        rig.step()
        assert rig.sup.stopping
    finally:
        rig.sup.loop.restore_signals()
    assert {sig: signal.getsignal(sig) for sig in before} == before


def test_run_serves_requests_and_returns_0_after_shutdown():
    """run() with the real clock in a thread: fake children exit when told to shut down."""
    r = Rig(sinks=(("cdr", "Oslo", 2),))
    r.sup = TestSupervisor(
        r.path, r.sup.config, launcher=r.launcher, clock=SystemClock(), journal_factory=r._journal, serve=False
    )
    original_make_link = r.sup._make_link

    def make_link():
        link = original_make_link()
        send = link.send

        def send_and_obey(identity, msg):
            if msg["type"] == "shutdown":
                for c in r.launcher.children:
                    if c.name != "broker":
                        c.exit(0)
            return send(identity, msg)

        link.send = send_and_obey
        return link

    r.sup._make_link = make_link
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("code", r.sup.run()))
    t.start()
    try:
        deadline = time.monotonic() + 10
        status = None
        while time.monotonic() < deadline and status is None:
            if r.sup.link is not None:
                status = r.sup.request("status").result(timeout=5)
            else:
                time.sleep(0.01)
        assert status is not None and status["sinks"][0]["name"] == "cdr"
        assert r.sup.request("shutdown").result(timeout=5) == {"stopping": True}
        t.join(timeout=10)
        assert not t.is_alive()
        assert result["code"] == 0
        assert all(c.code is not None for c in r.launcher.children)
    finally:
        if t.is_alive():
            r.sup.request("shutdown")
            t.join(timeout=10)
        r.close()


SIGNAL_DURING_START = r"""
import json, os, signal, sys
from common import config as config_mod
from tests.agent.supervisor_fakes import FakeJournal, FakeLauncher, RecordingLink, TestSupervisor, config_text

base = sys.argv[1]
path = os.path.join(base, "agent.toml")
with open(path, "w") as fh:
    fh.write(config_text(base))

class Launcher(FakeLauncher):
    def spawn(self, argv, stdin_bytes, name):
        child = super().spawn(argv, stdin_bytes, name)
        if name.startswith("worker"):  # still inside start(): systemctl reload, then stop
            os.kill(os.getpid(), signal.SIGHUP)
            os.kill(os.getpid(), signal.SIGTERM)
        return child

class Link(RecordingLink):
    def send(self, identity, msg):
        return False  # no child connected yet: the supervisor falls back to SIGTERM

class Sup(TestSupervisor):
    def _make_link(self):
        return Link(self._ctx, self.paths.supervisor_endpoint)

launcher = Launcher()
code = Sup(path, config_mod.load_or_raise(path), launcher=launcher, journal_factory=FakeJournal, serve=False).run()
print(json.dumps({"code": code, "children": [[c.name, c.signals, c.code] for c in launcher.children]}))
"""


def test_signals_during_startup_are_handled_after_it():
    """SIGHUP or SIGTERM while start() runs must not kill the supervisor (leaving its children behind)."""
    import json
    import shutil
    import subprocess
    import sys
    import tempfile

    base = tempfile.mkdtemp(prefix="esa-", dir="/tmp")
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        out = subprocess.run(
            [sys.executable, "-c", SIGNAL_DURING_START, base], capture_output=True, text=True, timeout=60, cwd=repo
        )
    finally:
        shutil.rmtree(base, ignore_errors=True)
    assert out.returncode == 0, (out.returncode, out.stderr[-2000:])
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["code"] == 0
    assert {name: signals for name, signals, _ in result["children"]} == {"broker": ["TERM"], "worker cdr": ["TERM"]}
    assert all(code is not None for _, _, code in result["children"])
