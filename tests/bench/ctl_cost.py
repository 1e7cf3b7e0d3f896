"""Row 12: what `eventsinkctl status` costs an operator, against `curl --unix-socket` on the same socket.

A real agent (one sink, at the Python receiver) answers both; each run is a
fresh process, timed from spawn to exit (wall clock), the two tools
alternating so that the machine's load falls on both alike. One untimed run of
each comes first (page cache, the agent's first answer, and the byte-code
cache: Python runs here with it, even when the shell says
PYTHONDONTWRITEBYTECODE, as on a node, where the package's postinst
byte-compiles the agent). The medians count (docs/control-api.md:
`eventsinkctl` is a thin client of the control socket).
`python -m tests.bench.ctl_cost [N] [NAME=PYTHONPATH ...]` runs the row alone,
timing the eventsinkctl of other source trees alongside (a before/after).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time

from tests.bench.receiver import FarReceiver
from tests.bench.runs import AgentUnderTest, TIMEOUT_SLACK

RUNS = 20
# The environment of the Python runs: with byte-code caching, as an installed eventsinkctl has it.
CACHED = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
CTL_MAIN = "import sys; from agent.client.ctl import main; sys.exit(main())"  # what the eventsinkctl script runs


def ctl_command(socket_path: str) -> list[str]:
    """`eventsinkctl --socket SOCK status` as installed (the console script beside this Python), else its code."""
    script = os.path.join(os.path.dirname(sys.executable), "eventsinkctl")
    if os.access(script, os.X_OK):
        return [script, "--socket", socket_path, "status"]
    return [sys.executable, "-c", CTL_MAIN, "--socket", socket_path, "status"]


def curl_command(socket_path: str) -> list[str]:
    return [shutil.which("curl") or "curl", "-sS", "--fail", "--unix-socket", socket_path, "http://agent/v1/status"]


def time_once(cmd: list[str], env: dict[str, str] | None = None) -> float:
    """Seconds from spawn to exit of CMD (its output discarded); RuntimeError unless it exits 0.

    With ENV it runs in /, so that `-c` with another source tree on PYTHONPATH does not find this one first."""
    t0 = time.perf_counter()
    done = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          env=env, cwd="/" if env is not None else None, timeout=TIMEOUT_SLACK)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"{cmd[0]} exited {done.returncode}: {done.stderr.decode(errors='replace')[-500:]}")
    return seconds


def alternate(commands: dict[str, tuple[list[str], dict[str, str] | None]], n: int) -> dict[str, list[float]]:
    """N timed runs of each command, taken in turn (after one untimed run of each)."""
    for cmd, env in commands.values():
        time_once(cmd, env)
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(n):
        for name, (cmd, env) in commands.items():
            times[name].append(time_once(cmd, env))
    return times


def summary(times: list[float]) -> dict:
    return {"median_ms": statistics.median(times) * 1000, "min_ms": min(times) * 1000, "max_ms": max(times) * 1000,
            "runs_ms": [t * 1000 for t in times]}


def ctl_status(n: int = RUNS, others: dict[str, str] | None = None) -> dict:
    """Row 12: N `eventsinkctl status` and N `curl --unix-socket` runs, alternating, against one real agent,
    and N of `python -c pass` (this Python's own start, which no client written in it can go below).

    OTHERS: name -> a PYTHONPATH whose eventsinkctl is timed too, in the same turns (e.g. the code before a change)."""
    with FarReceiver(0.0) as receiver, AgentUnderTest(receiver.url + "/ctl") as a:
        sock = a.agent.control_socket
        commands: dict[str, tuple[list[str], dict[str, str] | None]] = {
            "ctl": (ctl_command(sock), CACHED), "curl": (curl_command(sock), None),
            "python": ([sys.executable, "-c", "pass"], CACHED)}
        for name, path in (others or {}).items():
            commands[name] = ([sys.executable, "-c", CTL_MAIN, "--socket", sock, "status"],
                              {**CACHED, "PYTHONPATH": path})
        times = alternate(commands, n)
    out = {name: summary(t) for name, t in times.items()}
    out["runs"] = n
    out["ratio"] = out["ctl"]["median_ms"] / out["curl"]["median_ms"] if out["curl"]["median_ms"] else 0.0
    return out


def main(argv: list[str]) -> int:
    n = int(argv[0]) if argv else RUNS
    others = dict(arg.split("=", 1) for arg in argv[1:])
    r = ctl_status(n, others)
    for name in ("ctl", "curl", "python", *others):
        s = r[name]
        print(f"{name:<10} median {s['median_ms']:7.1f} ms  (min {s['min_ms']:.1f}, max {s['max_ms']:.1f}; {n} runs)")
    print(f"eventsinkctl / curl: {r['ratio']:.2f}x (goal <= 3)")
    for name in others:
        print(f"{name} / curl: {r[name]['median_ms'] / r['curl']['median_ms']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
