"""Bench row: the Publisher's CPU per event, new (bus.publisher.Publisher) vs old
(the publish path before issue 15, kept here as the baseline: orjson.dumps and
send_multipart on a plain XPUB socket).

Both run in this process, alternately, publishing the same events of the
simulated mix as fast as they can to a subscriber in a child process
(`python -m tests.bench.publisher_cost ENDPOINT COUNT`, so its CPU is not
counted). A run's cost is this process's CPU (`time.process_time`: every
thread, so ZeroMQ's I/O thread too) from the first publish until the
subscriber has everything, per event. Each kind runs REPEAT times; the median
counts. Bounded: COUNT events per run, TIMEOUT seconds per run.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import orjson
import zmq

from bus.publisher import Publisher
from tests.e2e.harness import REPO

TIMEOUT = 60.0  # s per run, publishing and receiving
READY_TIMEOUT = 10.0


class OldPublisher:
    """The publish path before issue 15: an XPUB socket (high HWM), dumps + send_multipart, nothing kept."""

    def __init__(self, endpoint: str):
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.XPUB)
        self._sock.setsockopt(zmq.SNDHWM, 1_000_000)
        self._sock.setsockopt(zmq.LINGER, 5000)
        self._sock.connect(endpoint)

    def wait_ready(self, timeout: float) -> bool:
        return bool(self._sock.poll(int(timeout * 1000))) and self._sock.recv()[:1] == b"\x01"

    def publish(self, event: str, data: dict, time: float | None = None) -> None:
        payload = orjson.dumps({"event": event, "time": _now() if time is None else time, "data": data})
        self._sock.send_multipart([event.encode("utf-8"), payload])

    def close(self) -> None:
        self._sock.close()
        self._ctx.term()


_now = time.time


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
    child = subprocess.Popen([sys.executable, "-m", "tests.bench.publisher_cost", endpoint, str(len(events))],
                             cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready", "the subscriber did not start"
        pub = Publisher(endpoint) if kind == "new" else OldPublisher(endpoint)
        assert pub.wait_ready(READY_TIMEOUT), "the subscriber never subscribed"
        publish = pub.publish
        cpu0, wall0 = time.process_time(), time.monotonic()
        for name, data in events:
            publish(name, data)
        if kind == "new":
            pub.flush(TIMEOUT)
        done = child.stdout.readline().split()  # the subscriber has everything (or gave up)
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        pub.close()
        received = int(done[1]) if len(done) == 2 else 0
        return {"kind": kind, "events": len(events), "received": received,
                "cpu_us_per_event": cpu / len(events) * 1e6, "seconds": wall}
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
        out[kind] = {"cpu_us_per_event": statistics.median(costs), "runs": costs,
                     "lost": max(r["events"] - r["received"] for r in runs)}
    out["ratio"] = out["new"]["cpu_us_per_event"] / out["old"]["cpu_us_per_event"]
    return out


if __name__ == "__main__":
    sys.exit(_subscriber(sys.argv[1], int(sys.argv[2])))
