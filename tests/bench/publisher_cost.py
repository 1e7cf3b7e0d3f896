"""Bench row: the Publisher's CPU per event, new (bus.publisher.Publisher) vs old
(the Publisher before numbered publishing, frozen in tests/bench/publisher_baseline.py).

Both run in this process, alternately, publishing the same events of the
simulated mix as fast as they can to a subscriber in a child process
(`python -m tests.bench.publisher_cost ENDPOINT COUNT`, so its CPU is not
counted). A run's cost is this process's CPU (`time.process_time`: every
thread, so ZeroMQ's I/O thread too) from the first publish until the
subscriber has everything, per event. Each kind runs REPEAT times; the median
counts. Bounded: COUNT events per run, TIMEOUT seconds per run.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import zmq

from bus.publisher import Publisher
from tests.bench.publisher_baseline import Publisher as OldPublisher
from tests.e2e.harness import REPO

TIMEOUT = 60.0  # s per run, publishing and receiving
READY_TIMEOUT = 10.0


def _subscriber(endpoint: str, count: int) -> int:
    """The child: bind a SUB, say "ready" once subscribed, print "done N" after COUNT messages (or TIMEOUT)."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    sock.setsockopt(zmq.RCVHWM, 0)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(endpoint)
    print("ready", flush=True)
    got, deadline = 0, time.monotonic() + TIMEOUT
    while got < count and time.monotonic() < deadline:
        if sock.poll(100):
            sock.recv_multipart()
            got += 1
    print(f"done {got}", flush=True)
    ctx.destroy(linger=0)
    return 0


def one_run(kind: str, events: list[tuple[str, dict]], workdir: str) -> dict:
    """One run of KIND ("old" or "new"): CPU us per event, and how many arrived."""
    endpoint = f"ipc://{workdir}/{kind}.sock"
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.bench.publisher_cost", endpoint, str(len(events))],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "ready", "the subscriber did not start"
        pub = Publisher(endpoint) if kind == "new" else OldPublisher(endpoint)
        assert pub.wait_ready(READY_TIMEOUT), "the subscriber never subscribed"
        publish = pub.publish
        cpu0, wall0 = time.process_time(), time.monotonic()
        for name, data in events:
            publish(name, data)
        pub.flush(TIMEOUT)
        done = child.stdout.readline().split()  # the subscriber has everything (or gave up)
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        pub.close()
        received = int(done[1]) if len(done) == 2 else 0
        return {
            "kind": kind,
            "events": len(events),
            "received": received,
            "cpu_us_per_event": cpu / len(events) * 1e6,
            "seconds": wall,
        }
    finally:
        child.kill()
        child.wait()


def publisher_cost(events: list[tuple[str, dict]], repeat: int) -> dict:
    """Old and new, alternately, REPEAT times each: the medians and their ratio."""
    workdir = tempfile.mkdtemp(prefix="esa-pubcost-", dir="/tmp")
    try:
        done: dict[str, list[dict]] = {"old": [], "new": []}
        for _ in range(max(1, repeat)):
            for kind in ("old", "new"):
                done[kind].append(one_run(kind, events, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    out: dict = {"events": len(events)}
    for kind, runs in done.items():
        costs = [r["cpu_us_per_event"] for r in runs]
        out[kind] = {
            "cpu_us_per_event": statistics.median(costs),
            "runs": costs,
            "lost": max(r["events"] - r["received"] for r in runs),
        }
    out["ratio"] = out["new"]["cpu_us_per_event"] / out["old"]["cpu_us_per_event"]
    return out


if __name__ == "__main__":
    sys.exit(_subscriber(sys.argv[1], int(sys.argv[2])))
