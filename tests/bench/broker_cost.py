"""The broker's CPU per event alone, at a paced rate, against the floor's journal process.

`python -m tests.bench.broker_cost [--base REPO] [--rounds N] [--rate EV_S] [--seconds S]`
runs, alternated round by round: the broker of this tree (`python -m bus.broker`, a bare
ROUTER standing in for the supervisor and draining its reports), the broker of REPO (another
checkout, e.g. a worktree at the base commit; run with the same interpreter and PYTHONPATH=REPO)
when given, and the floor's journal process (tests/bench/floor.py). Each gets the bench's
simulated mix from a paced bare publisher (tests/bench/loadgen.py, kind "fast") while a SUB on
its fan-out counts; the CPU of the measured process only (schedstat of every thread, /proc) is
read once the first RATE events came out and again when all but the last RATE did. Prints
us/event per run and the medians with their ratios. A measuring script, bounded in time: not a test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import zmq

from common.config import encode_spec, parse
from tests.bench import loadgen
from tests.bench.runs import task_cpu_ns

HERE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IDLE_SECONDS = 10.0  # a run whose fan-out stays silent this long is given up


def broker_config(root: str):
    toml = f"""
[node]
address = "127.0.0.1"
location = "Oslo"
[agent]
runtime_dir = "{root}/run"
state_dir = "{root}/state"
"""
    result = parse(toml)
    assert result.config is not None, result.problems
    return result.config


def start_publisher(endpoint: str, corpus_file: str, count: int, rate: float) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.bench.loadgen", "publish", endpoint, corpus_file, str(count), "fast", str(rate)],
        cwd=HERE,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline().strip()
    assert line == "ready", f"publisher: {line!r}"
    return proc


def count_until(sub: zmq.Socket, router: zmq.Socket | None, target: int, seen: int) -> int:
    """Receive on SUB (draining ROUTER's reports) until TARGET messages were seen in all."""
    poller = zmq.Poller()
    poller.register(sub, zmq.POLLIN)
    if router is not None:
        poller.register(router, zmq.POLLIN)
    quiet_since = time.monotonic()
    while seen < target:
        ready = dict(poller.poll(100))
        if router is not None and router in ready:
            while router.poll(0):
                router.recv_multipart()
        if sub in ready:
            while sub.poll(0):
                sub.recv_multipart()
                seen += 1
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > IDLE_SECONDS:
            raise SystemExit(f"fan-out silent at {seen} of {target}")
    return seen


def measure(kind: str, repo: str, corpus_file: str, rate: float, seconds: float) -> float:
    """One run of KIND ("broker" of REPO, or "floor"): us of CPU per event in its window."""
    count = int(rate * seconds)
    with tempfile.TemporaryDirectory(prefix="bc", dir="/tmp") as root:
        ctx = zmq.Context()
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.setsockopt(zmq.RCVHWM, 0)
        router = None
        if kind == "broker":
            config = broker_config(root)
            os.makedirs(f"{root}/run", mode=0o750)
            router = ctx.socket(zmq.ROUTER)
            router.bind(f"ipc://{root}/run/supervisor.sock")
            env = dict(os.environ, PYTHONPATH=repo)
            proc = subprocess.Popen([sys.executable, "-m", "bus.broker"], cwd=repo, env=env, stdin=subprocess.PIPE)
            proc.stdin.write(encode_spec(config))
            proc.stdin.close()
            endpoint, fanout = f"ipc://{root}/run/publish.sock", f"ipc://{root}/run/fanout.sock"
        else:
            endpoint, fanout = f"ipc://{root}/publish.sock", f"ipc://{root}/relay.sock"
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.bench.floor",
                    "journal",
                    endpoint,
                    fanout,
                    f"{root}/floor.sqlite3",
                    str(count),
                ],
                cwd=HERE,
                stdout=subprocess.PIPE,
                text=True,
            )
        sub.connect(fanout)
        try:
            pub = start_publisher(endpoint, corpus_file, count, rate)
            if kind == "floor":
                assert proc.stdout.readline().strip() == "ready"
            pub.stdin.write("go\n")
            pub.stdin.flush()
            seen = count_until(sub, router, int(rate), 0)  # start-up and first connections not counted
            cpu0, seen0 = task_cpu_ns(proc.pid), seen
            seen = count_until(sub, router, count - int(rate), seen)
            cpu1 = task_cpu_ns(proc.pid)
            pub.wait(60)
            return (cpu1 - cpu0) / 1000 / (seen - seen0)
        finally:
            proc.terminate()
            proc.wait(30)
            sub.close(linger=0)
            if router is not None:
                router.close(linger=0)
            ctx.term()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", help="another checkout whose broker to measure alongside")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=12.0)
    args = parser.parse_args(argv)
    variants = (
        [("new", "broker", HERE)] + ([("base", "broker", args.base)] if args.base else []) + [("floor", "floor", HERE)]
    )
    results: dict[str, list[float]] = {name: [] for name, _, _ in variants}
    with tempfile.TemporaryDirectory(prefix="bc-corpus", dir="/tmp") as tmp:
        corpus_file = os.path.join(tmp, "corpus.pickle")
        loadgen.write_corpus(corpus_file, loadgen.corpus(2000))
        for round_no in range(args.rounds):
            for name, kind, repo in variants:
                us = measure(kind, repo, corpus_file, args.rate, args.seconds)
                results[name].append(us)
                print(f"round {round_no + 1} {name}: {us:.0f} us/event", flush=True)
    medians = {name: statistics.median(v) for name, v in results.items()}
    print(" ".join(f"{name} {m:.0f}" for name, m in medians.items()), "us/event (medians)")
    print(f"new/floor {medians['new'] / medians['floor']:.2f}", end="")
    if args.base:
        print(f"  base/floor {medians['base'] / medians['floor']:.2f}  new/base {medians['new'] / medians['base']:.2f}")
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
