"""The suite's one poll with a deadline (tests/helpers.py `wait_until`): what it returns, what it
retries, and the failure that names what it waited for."""

from __future__ import annotations

import time

import pytest

from tests.helpers import wait_until


def test_returns_the_first_truthy_value_of_the_predicate():
    answers = iter([0, None, "", {"pid": 42}])
    assert wait_until(lambda: next(answers), timeout=5, interval=0.001) == {"pid": 42}


def test_a_deadline_passed_fails_naming_what_and_the_last_error_of_a_retried_kind():
    def refused():
        raise ConnectionRefusedError("agent not up")

    t0 = time.monotonic()
    with pytest.raises(
        AssertionError, match=r"waiting for the agent's socket \(last error: ConnectionRefusedError"
    ) as err:
        wait_until(refused, 0.2, "the agent's socket", interval=0.01, retry_on=(OSError,))
    assert 0.2 <= time.monotonic() - t0 < 5
    assert isinstance(err.value.__cause__, ConnectionRefusedError)


def test_an_exception_of_another_kind_propagates_at_once():
    calls = []

    def broken():
        calls.append(1)
        raise KeyError("sinks")

    with pytest.raises(KeyError):
        wait_until(broken, 30, "status", retry_on=())
    assert calls == [1]


def test_a_false_predicate_is_asked_again_until_the_deadline():
    calls = []
    with pytest.raises(AssertionError, match=r"timed out after 0.1s waiting for condition$"):
        wait_until(lambda: calls.append(1), 0.1, interval=0.01)
    assert len(calls) >= 3
