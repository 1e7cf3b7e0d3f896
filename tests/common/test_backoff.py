"""The immutable backoff policy shared by POST retries and worker restarts."""

import email.utils

import pytest

from common.backoff import Backoff, parse_retry_after


def test_healthy_policy_owes_no_wait():
    b = Backoff(initial=0.5, maximum=1800)
    assert (b.current, b.next, b.exceeded) == (0.0, 0.5, False)


def test_each_failure_doubles_and_success_resets():
    b = Backoff(initial=0.5, maximum=1800)
    waits = []
    for _ in range(4):
        b = b.failed()
        waits.append(b.current)
    assert waits == [0.5, 1.0, 2.0, 4.0]
    assert b.next == 8.0
    assert b.succeeded().current == 0.0 and b.succeeded().failures == 0


def test_policy_is_immutable():
    b = Backoff(initial=1, maximum=10)
    b.failed()
    assert b.failures == 0
    with pytest.raises(AttributeError):
        b.failures = 3  # type: ignore[misc]


def test_retry_after_is_a_floor_for_the_current_wait_only():
    b = Backoff(initial=0.5, maximum=1800).failed(retry_after=3)
    assert b.current == 3.0
    b = b.failed()
    assert b.current == 1.0  # the floor came from the previous answer only


def test_exceeded_when_the_wait_passes_the_maximum_and_capped_never_does():
    b = Backoff(initial=0.1, maximum=0.5)
    states = []
    for _ in range(4):
        b = b.failed()
        states.append((round(b.current, 3), b.exceeded))
    assert states == [(0.1, False), (0.2, False), (0.4, False), (0.8, True)]
    assert b.capped() == 0.5


@pytest.mark.parametrize(
    "value, expected", [("3", 3.0), (" 120 ", 120.0), (None, None), ("", None), ("soon", None), ("-1", None)]
)
def test_parse_retry_after_seconds(value, expected):
    assert parse_retry_after(value) == expected


def test_parse_retry_after_http_date():
    when = email.utils.formatdate(1_000_010, usegmt=True)
    assert parse_retry_after(when, now=1_000_000) == pytest.approx(10.0)
    assert parse_retry_after(email.utils.formatdate(999_000, usegmt=True), now=1_000_000) == 0.0
