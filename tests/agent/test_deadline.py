"""Each deadline of the supervisor is one timer of its loop, set and cleared by its owner
(agent/supervision/deadline.py): the loop wakes for it, and for nothing once it no longer matters."""

from __future__ import annotations

import pytest

from agent.supervision.deadline import Deadline
from common.internal import CHILD_GRACE
from common.loop import Loop
from tests.agent.supervisor_fakes import Rig


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def loop_and_clock():
    clock = Clock()
    loop = Loop(clock=clock)
    yield loop, clock
    loop.close()


def test_a_deadline_moved_or_cleared_leaves_one_timer_or_none(loop_and_clock):
    loop, clock = loop_and_clock
    fired: list[float] = []
    deadline = Deadline(lambda when: loop.call_at(when, lambda: fired.append(clock())))
    deadline.set(60.0)
    deadline.set(55.0)  # moved: the timer at 60 is cancelled
    assert loop.next_timer() == 55.0
    deadline.set(55.0)  # unchanged: no second timer
    clock.now = 70.0
    loop.run_once(max_wait=0)
    assert fired == [70.0]
    deadline.set(80.0)
    deadline.clear()
    assert loop.next_timer() is None and deadline.when is None


def test_without_a_loop_a_deadline_only_remembers_its_time():
    deadline = Deadline()
    deadline.set(12.5)
    assert deadline.when == 12.5


@pytest.fixture
def rig():
    r = Rig(sinks=(("cdr", "Oslo", 2),))
    r.start()
    r.broker_report()
    r.report_all("running")
    yield r
    r.close()


def test_a_worker_that_exits_when_restarted_leaves_no_kill_timer(rig):
    old = rig.launcher.current("cdr")
    rig.ask("restart", sink="cdr")
    assert rig.sup.time_to_next_deadline() == pytest.approx(CHILD_GRACE)  # its SIGKILL, should it not exit
    old.exit(0)
    rig.step()
    assert rig.launcher.current("cdr") is not old
    rig.report("cdr", "running")
    assert rig.sup.time_to_next_deadline() is None  # nothing left to wake for
    assert old.signals == []


def test_the_kill_timer_alone_wakes_the_loop_for_a_worker_that_does_not_exit(rig):
    rig.launcher.exit_on_term = False
    old = rig.launcher.current("cdr")
    rig.ask("restart", sink="cdr")
    rig.clock.advance(CHILD_GRACE)
    rig.step()  # no report, no command, no exit: only the timer is due
    assert old.signals == ["KILL"]
