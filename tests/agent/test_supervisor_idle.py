"""The supervisor sleeps when idle: no tick, only signals, its sockets,
its children's exits and real deadlines wake it; children report on change
plus a heartbeat, and nothing the supervisor does relies on periodic reports."""

import threading
import time

import pytest

from agent.supervision.processes import SystemClock
from agent.supervision.worker_reports import STOP_RESEND_INTERVAL
from tests.agent.supervisor_fakes import Rig, TestSupervisor
from tests.helpers import wait_until


@pytest.fixture
def rig():
    r = Rig(sinks=(("cdr", "Oslo", 2), ("siem", "Oslo", 1), ("soc", "Oslo", 2)))
    r.start()
    r.broker_report()
    r.report_all("running")
    yield r
    r.close()


def test_an_idle_supervisor_has_no_deadline_to_wake_for(rig):
    assert all(s["state"] == "running" for s in rig.ask("status")["sinks"])
    assert rig.sup.time_to_next_deadline() is None  # before: LOOP_INTERVAL, ten wake-ups a second


@pytest.fixture
def running():
    """run() with the real clock in a thread, every poll of its loop counted."""
    r = Rig(sinks=(("cdr", "Oslo", 2), ("siem", "Oslo", 1), ("soc", "Oslo", 2)))
    r.sup = TestSupervisor(
        r.path, r.sup.config, launcher=r.launcher, clock=SystemClock(), journal_factory=r._journal, serve=False
    )
    polls = []
    original_start = r.sup.start

    def start():
        original_start()
        poll = r.sup.loop._poller.poll
        r.sup.loop._poller.poll = lambda timeout=None: polls.append(timeout) or poll(timeout)

    r.sup.start = start
    t = threading.Thread(target=r.sup.run)
    t.start()
    wait_until(
        lambda: r.sup.link is not None and len(r.launcher.children) == 4,
        timeout=15.0,
        what="the supervisor started",
        retry_on=(),
    )
    # Its first turn (what came during start) may not have run yet: idleness is measured from its first sleep.
    wait_until(lambda: polls and polls[-1] is None, timeout=15.0, what="the loop asleep", retry_on=())
    yield r, polls
    r.sup.request("shutdown").result(timeout=5)
    for child in r.launcher.children:  # fake workers do not act on the shutdown message
        child.exit(0)
    t.join(timeout=10)
    assert not t.is_alive()
    r.close()


def test_an_idle_supervisor_sleeps_in_one_poll(running):
    r, polls = running
    before = len(polls)
    window = 1.0
    time.sleep(window)  # measuring idleness, not waiting for anything
    turns = len(polls) - before
    assert turns <= 1, f"{turns} loop turns in {window} s of idleness"
    assert polls[-1] is None  # sleeping until woken, no timeout


def test_a_child_exit_wakes_the_sleeping_loop(running):
    r, polls = running
    r.launcher.current("siem").exit(1)  # no report, no command: only its exit fd says so
    st = wait_until(
        lambda: (s := r.sup.request("status").result(timeout=5)["sinks"][1])["state"] == "crashed" and s,
        timeout=15.0,
        what="the crash noticed",
        retry_on=(),
    )
    assert st["pid"] is None
    # The restart after its backoff is a real deadline: the loop wakes for it on its own.
    wait_until(
        lambda: r.sup.request("status").result(timeout=5)["sinks"][1]["state"] == "starting",
        timeout=15.0,
        what="the restart after the backoff",
        retry_on=(),
    )
    assert len(r.launcher.of("siem")) == 2


def test_stop_publisher_is_resent_at_its_deadline_without_a_new_report(rig):
    rig.report("cdr", "backoff_exceeded")
    rig.report("cdr", "running")  # the worker has not obeyed (yet); it may stay silent until its heartbeat
    assert len(rig.link.to("cdr", "stop_publisher")) == 1
    assert rig.sup.time_to_next_deadline() == pytest.approx(STOP_RESEND_INTERVAL)
    rig.clock.advance(STOP_RESEND_INTERVAL)
    rig.step()
    assert len(rig.link.to("cdr", "stop_publisher")) == 2
    rig.report("cdr", "paused")
    assert rig.sup.time_to_next_deadline() is None


def test_a_crash_after_a_stable_run_is_forgiven_without_a_tick(rig):
    for _ in range(3):  # three crashes in a row: the next wait would be 4 s
        rig.launcher.current("cdr").exit(1)
        rig.step()
        rig.clock.advance(rig.slot("cdr").restart_at - rig.clock.monotonic())
        rig.step()
    rig.clock.advance(30.0)  # a long stable run during which the loop never turned
    rig.launcher.current("cdr").exit(1)
    rig.step()
    assert rig.slot("cdr").restart_at - rig.clock.monotonic() == pytest.approx(0.5)
