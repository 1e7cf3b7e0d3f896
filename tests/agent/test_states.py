"""The publisher state machine: every allowed and every forbidden transition,
and what change_state records on the way."""

import itertools
import logging

import pytest

from agent.supervision.states import (
    PROCESS_STATES,
    RUNNING_STATES,
    STOPPABLE_STATES,
    TRANSITIONS,
    ChildState,
    IllegalTransition,
    allowed,
    change_state,
)
from common.backoff import Backoff

S = ChildState

ALLOWED = {
    (S.STARTING, S.RUNNING),
    (S.STARTING, S.STOPPED),
    (S.STARTING, S.CRASHED),
    (S.STARTING, S.STARTING),
    (S.RUNNING, S.STOPPED),
    (S.RUNNING, S.CRASHED),
    (S.RUNNING, S.STARTING),
    (S.STOPPED, S.STARTING),
    (S.STOPPED, S.CRASHED),
    (S.CRASHED, S.STARTING),
}


class Slot:
    def __init__(self, state):
        self.name = "cdr"
        self.state = state
        self.state_since = None
        self.state_reason = ""
        self.publisher_running = state is S.RUNNING
        self.restart_backoff = Backoff(initial=0.5, maximum=30.0)
        self.restart_at = None


def test_values_are_the_interface_strings():
    assert [s.value for s in S] == ["starting", "running", "stopped", "crashed"]
    assert str(S.CRASHED) == "crashed"


def test_named_sets():
    assert STOPPABLE_STATES == {S.STARTING, S.RUNNING}
    assert RUNNING_STATES == {S.RUNNING}
    assert S.CRASHED not in PROCESS_STATES and S.STOPPED in PROCESS_STATES


def test_table_is_exactly_the_documented_one():
    assert {(a, b) for a, targets in TRANSITIONS.items() for b in targets} == ALLOWED


@pytest.mark.parametrize("old,new", sorted(ALLOWED, key=str))
def test_allowed_transition_moves_and_records(old, new):
    slot = Slot(old)
    change_state(slot, new, "because", now=12.5)
    assert slot.state is new
    assert slot.state_since == 12.5 and slot.state_reason == "because"
    assert slot.publisher_running is (new is S.RUNNING)


FORBIDDEN = sorted(set(itertools.product(S, S)) - ALLOWED, key=str)


@pytest.mark.parametrize("old,new", FORBIDDEN)
def test_forbidden_transition_raises_and_changes_nothing(old, new, caplog):
    slot = Slot(old)
    with caplog.at_level(logging.ERROR, logger="agent.states"), pytest.raises(IllegalTransition):
        change_state(slot, new, "nope", now=1.0)
    assert slot.state is old and slot.state_since is None
    assert not allowed(old, new)
    assert any("BUG" in r.getMessage() for r in caplog.records)


def test_crashed_bumps_backoff_and_schedules_restart():
    slot = Slot(S.RUNNING)
    change_state(slot, S.CRASHED, "died", now=100.0)
    assert slot.restart_backoff.failures == 1
    assert slot.restart_at == 100.5
    change_state(slot, S.STARTING, "restart", now=100.5)
    assert slot.restart_at is None
    change_state(slot, S.CRASHED, "died again", now=101.0)
    assert slot.restart_backoff.failures == 2 and slot.restart_at == 102.0


def test_crash_backoff_is_capped():
    slot = Slot(S.STARTING)
    now = 0.0
    for _ in range(12):
        change_state(slot, S.CRASHED, "died", now=now)
        wait = slot.restart_at - now
        change_state(slot, S.STARTING, "restart", now=now)
    assert wait == 30.0


def test_state_change_is_logged(caplog):
    slot = Slot(S.STARTING)
    with caplog.at_level(logging.INFO, logger="agent.states"):
        change_state(slot, S.RUNNING, "first report", now=1.0)
    assert "sink cdr: starting -> running (first report)" in caplog.text
