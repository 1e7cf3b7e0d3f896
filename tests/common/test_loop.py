"""The one event loop (common/loop.py): timers, handlers, callbacks, signals, on real fds and sockets."""

from __future__ import annotations

import os
import signal
import threading

import pytest
import zmq

from common.loop import POLLIN, Loop


class FakeClock:
    def __init__(self, now: float = 100.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def loop():
    lp = Loop()
    yield lp
    lp.close()


def test_a_new_timer_needs_one_registration_and_no_other_edit():
    """A component that owns a deadline registers it once; nothing else in the loop is told."""
    clock = FakeClock()
    lp = Loop(clock=clock)

    class Component:  # stands for any new component of a process: its deadline is its own business
        def __init__(self, loop: Loop):
            self.fired: list[float] = []
            loop.call_later(2.0, self.fire)

        def fire(self) -> None:
            self.fired.append(clock())

    component = Component(lp)
    assert lp.next_timer() == 102.0  # the loop's wait now ends at the component's deadline
    lp.run_once(max_wait=0)
    assert component.fired == []
    clock.now = 102.0
    lp.run_once(max_wait=0)
    assert component.fired == [102.0]
    assert lp.next_timer() is None  # ran once
    lp.close()


def test_timers_run_in_time_order_then_in_the_order_added():
    clock = FakeClock()
    lp = Loop(clock=clock)
    ran: list[str] = []
    lp.call_at(105.0, ran.append, "late")
    lp.call_at(101.0, ran.append, "first")
    lp.call_at(101.0, ran.append, "second")
    clock.now = 110.0
    lp.run_once(max_wait=0)
    assert ran == ["first", "second", "late"]
    lp.close()


def test_a_cancelled_timer_never_runs_and_no_longer_sets_the_wait():
    clock = FakeClock()
    lp = Loop(clock=clock)
    ran: list[str] = []
    soon = lp.call_later(1.0, ran.append, "soon")
    lp.call_later(5.0, ran.append, "later")
    soon.cancel()
    assert not soon.pending
    assert lp.next_timer() == 105.0
    clock.now = 106.0
    lp.run_once(max_wait=0)
    assert ran == ["later"]
    lp.close()


def test_the_poll_sleeps_until_the_soonest_timer(loop):
    ran = []
    loop.call_later(0.05, ran.append, "due")
    start = loop.time()
    while not ran and loop.time() - start < 5:
        loop.run_once()  # no max_wait: the timer alone ends the wait
    assert ran == ["due"]
    assert loop.time() - start >= 0.049


def test_a_ready_fd_calls_its_handler_with_the_events(loop):
    r, w = os.pipe()
    seen: list[int] = []
    loop.add_handler(r, lambda events: (seen.append(events), os.read(r, 10)))
    loop.run_once(max_wait=0)
    assert seen == []
    os.write(w, b"x")
    loop.run_once(max_wait=1)
    assert seen == [POLLIN]
    loop.remove_handler(r)
    os.write(w, b"y")
    loop.run_once(max_wait=0)
    assert seen == [POLLIN]  # removed: not called again
    os.close(r)
    os.close(w)


def test_a_zmq_socket_is_a_handler_too(loop):
    ctx = zmq.Context()
    a = ctx.socket(zmq.PAIR)
    b = ctx.socket(zmq.PAIR)
    a.bind("inproc://loop-test")
    b.connect("inproc://loop-test")
    got: list[bytes] = []
    loop.add_handler(b, lambda events: got.append(b.recv()))
    a.send(b"hello")
    for _ in range(100):
        loop.run_once(max_wait=0.05)
        if got:
            break
    assert got == [b"hello"]
    loop.remove_handler(b)
    a.close(0)
    b.close(0)
    ctx.term()


def test_add_callback_from_another_thread_wakes_a_sleeping_poll(loop):
    ran = threading.Event()
    timer = threading.Timer(0.05, loop.add_callback, args=(ran.set,))
    timer.start()
    start = loop.time()
    loop.run_once(max_wait=10)  # would sleep 10 s unless woken
    while not ran.is_set() and loop.time() - start < 5:
        loop.run_once(max_wait=0.1)
    timer.join()
    assert ran.is_set()
    assert loop.time() - start < 5


def test_a_signal_becomes_a_loop_callback_not_work_in_the_handler(loop):
    got: list[int] = []
    old = signal.getsignal(signal.SIGUSR1)
    loop.add_signal_handler(signal.SIGUSR1, got.append)
    os.kill(os.getpid(), signal.SIGUSR1)
    assert got == []  # the handler only enqueued
    loop.run_once(max_wait=5)
    assert got == [signal.SIGUSR1]
    loop.restore_signals()
    assert signal.getsignal(signal.SIGUSR1) is old


def test_stop_ends_run_after_the_turn(loop):
    turns = []
    loop.call_later(0.0, lambda: (turns.append(1), loop.stop()))
    loop.run()
    assert turns == [1]
    assert loop.stopping


def test_on_error_receives_a_failing_callback_and_the_loop_goes_on():
    errors: list[BaseException] = []
    lp = Loop(on_error=errors.append)
    ran = []
    lp.call_later(0, lambda: 1 / 0)
    lp.call_later(0, ran.append, "after")
    lp.run_once(max_wait=0)
    assert [type(e) for e in errors] == [ZeroDivisionError]
    assert ran == ["after"]
    lp.close()


def test_without_on_error_a_failing_callback_propagates(loop):
    loop.call_later(0, lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        loop.run_once(max_wait=0)
