"""The calls-per-event bench's probe (tests/bench/calls_per_event.py puts this folder on PYTHONPATH).

In a sink worker process only (`python -m sinks.worker`), counts the Python calls of its main
thread with `sys.setprofile` ('call' events) and keeps the running count in the file
`$ESA_BENCH_CALLS_DIR/<pid>.calls`, rewritten by a thread of its own every WRITE_EVERY s (the
bench kills the agent, so an at-exit write would never happen). The product has no hook for it.
"""

import os
import sys
import threading

WRITE_EVERY = 0.02  # s


def _start() -> None:
    folder = os.environ.get("ESA_BENCH_CALLS_DIR")
    argv = getattr(sys, "orig_argv", [])
    if not folder or "sinks.worker" not in argv:
        return
    counted = [0]

    def count(frame, event, arg):
        if event == "call":
            counted[0] += 1

    path = os.path.join(folder, f"{os.getpid()}.calls")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    stop = threading.Event()

    def write() -> None:  # not profiled: sys.setprofile covers the main thread only
        while not stop.wait(WRITE_EVERY):
            os.pwrite(fd, b"%20d\n" % counted[0], 0)

    threading.Thread(target=write, name="calls-probe", daemon=True).start()
    sys.setprofile(count)


_start()
