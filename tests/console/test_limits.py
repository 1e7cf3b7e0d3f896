"""The console's login rate limit and session table as units, on a fake clock."""

from console.security import FAIL_WINDOW, LOCKOUT, LoginLimiter, Sessions


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_five_failures_within_a_minute_lock_the_address_for_a_minute():
    clock = Clock()
    limiter = LoginLimiter(clock)
    for _ in range(4):
        limiter.failed("127.0.0.2")
        clock.t += 10
    assert not limiter.refused("127.0.0.2")
    limiter.failed("127.0.0.2")  # the fifth within 40 s
    assert limiter.refused("127.0.0.2") and not limiter.refused("127.0.0.3")
    clock.t += LOCKOUT - 0.1
    assert limiter.refused("127.0.0.2")
    clock.t += 0.2
    assert not limiter.refused("127.0.0.2")


def test_failures_spread_over_more_than_a_minute_do_not_lock():
    clock = Clock()
    limiter = LoginLimiter(clock)
    for _ in range(10):
        limiter.failed("127.0.0.2")
        clock.t += FAIL_WINDOW / 4 + 1
    assert not limiter.refused("127.0.0.2")


def test_a_success_forgets_the_failures():
    clock = Clock()
    limiter = LoginLimiter(clock)
    for _ in range(4):
        limiter.failed("a")
    limiter.succeeded("a")
    limiter.failed("a")
    assert not limiter.refused("a")


def test_a_spray_of_addresses_stays_bounded():
    limiter = LoginLimiter(Clock())
    for i in range(25_000):
        limiter.failed(f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}")
    assert len(limiter.failures) <= 10_000


def test_sessions_end_at_their_hours_or_when_closed():
    clock = Clock()
    sessions = Sessions(hours=1, clock=clock)
    a, b = sessions.open(), sessions.open()
    assert a != b and sessions.valid(a) and sessions.valid(b)
    sessions.close(a)
    assert not sessions.valid(a) and sessions.valid(b)
    clock.t += 3600
    assert not sessions.valid(b)
    assert not sessions.valid(None) and not sessions.valid("forged")
