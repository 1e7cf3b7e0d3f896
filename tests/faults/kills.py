"""Fault injection shared by the fault tests: kill -9 of a sink's worker at random moments."""

from __future__ import annotations

import os
import random
import signal
import time

from tests.helpers import wait_until


def kill_workers(
    agent, rng: random.Random, times: int, sink: str = "cdr", wait: tuple[float, float] = (0.3, 1.2)
) -> list[int]:
    """kill -9 the worker of SINK TIMES times, each after a random pause drawn from WAIT (fault
    timing, not synchronisation), each time a live one that was not killed before; their pids."""
    killed: list[int] = []
    for _ in range(times):
        time.sleep(rng.uniform(*wait))
        pid = wait_until(
            lambda: (p := agent.sink_status(sink)["pid"]) not in (None, *killed) and p, what="a live worker to kill"
        )
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)
    return killed
