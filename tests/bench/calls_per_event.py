"""The calls-per-event row: Python calls the sink worker makes per delivered event, paced, in order, 1 sink.

Owns the one run: a whole agent with one sink (max_in_flight = 1) to nginx, fed
the simulated mix at a paced rate by one loadgen publisher, with
tests/bench/calls_probe/ on PYTHONPATH (its sitecustomize counts the 'call'
events of the worker's main thread; no other process counts). The window opens
once the warm-up's events were delivered and closes once the window's were; the
figure is the calls counted in it over the events delivered in it.

`python -m tests.bench.calls_per_event [SECONDS]` runs it alone (nginx needed).
"""

from __future__ import annotations

import os
import sys
import tempfile
from contextlib import contextmanager

from tests.bench import loadgen
from tests.bench.paced import Consumer
from tests.bench.runs import (
    TIMEOUT_SLACK,
    AgentUnderTest,
    NginxTarget,
    Sizes,
    await_ready,
    deadline_for,
    finish_tools,
    kill_tools,
    publishers,
    send_go,
)
from tests.bench.servers import Nginx

RATE = 200.0  # events/s
PROBE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "calls_probe")


@contextmanager
def _probed(folder: str):
    """Processes started inside load the probe (the agent's children inherit the environment)."""
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "ESA_BENCH_CALLS_DIR")}
    os.environ["PYTHONPATH"] = PROBE + (os.pathsep + saved["PYTHONPATH"] if saved["PYTHONPATH"] else "")
    os.environ["ESA_BENCH_CALLS_DIR"] = folder
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _calls(folder: str) -> int:
    """The count of the one worker's probe file (it is rewritten in place every few ms)."""
    names = [n for n in os.listdir(folder) if n.endswith(".calls")]
    if len(names) != 1:
        raise RuntimeError(f"expected one sink worker's count, found {names}")
    with open(os.path.join(folder, names[0])) as fh:
        return int(fh.read().strip() or 0)


def calls_per_event(nginx: Nginx, sizes: Sizes, corpus: loadgen.Corpus, workdir: str, label: str = "calls") -> dict:
    """One paced run at RATE; the worker's Python calls per event delivered in the measured window."""
    folder = tempfile.mkdtemp(prefix="calls-", dir=workdir)
    corpus_file = os.path.join(workdir, f"{label}.pickle")
    count = len(corpus.take(round(RATE * (sizes.paced_warmup + sizes.paced_seconds + sizes.paced_tail))))
    loadgen.write_corpus(corpus_file, corpus.take(count))
    target = NginxTarget(nginx, label)
    with _probed(folder), AgentUnderTest(target.url, max_in_flight=1) as a:
        if target.wait(1, TIMEOUT_SLACK).events < 1:
            raise RuntimeError(f"the sink never delivered eventsink_started:\n{a.agent.log()[-2000:]}")
        consumer = Consumer(a.agent.publish_endpoint, a.pids(), [target])
        pub = publishers(consumer.endpoint, corpus_file, count, 1, "publisher", RATE)
        try:
            await_ready(pub, "the paced publisher")
            return _window(consumer, folder, pub, count, sizes)
        finally:
            kill_tools(pub)


def _window(consumer: Consumer, folder: str, pub, count: int, sizes: Sizes) -> dict:
    warm, in_window = max(1, round(RATE * sizes.paced_warmup)), max(1, round(RATE * sizes.paced_seconds))
    before = consumer.delivered()
    send_go(pub)
    consumer.reach(before + warm, deadline_for(warm), "warm-up")
    calls_a, delivered_a = _calls(folder), consumer.delivered()
    consumer.reach(delivered_a + in_window, deadline_for(warm + in_window), "measured window")
    calls_b, delivered_b = _calls(folder), consumer.delivered()
    delivered = consumer.wait_delivered(before + count, deadline_for(count)) - before
    finish_tools(pub, TIMEOUT_SLACK)
    consumer.check_alive()
    events = delivered_b - delivered_a
    return {
        "paced_at": RATE,
        "events": count,
        "delivered": delivered,
        "lost": count - delivered,
        "delivered_in_window": events,
        "calls_in_window": calls_b - calls_a,
        "calls_per_event": (calls_b - calls_a) / max(1, events),
    }


def main() -> int:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else Sizes().paced_seconds
    sizes = Sizes(paced_seconds=seconds)
    workdir = tempfile.mkdtemp(prefix="esa-calls-", dir="/tmp")
    corpus = loadgen.corpus(round(RATE * (sizes.paced_warmup + seconds + sizes.paced_tail)) + 100)
    with Nginx() as nginx:
        r = calls_per_event(nginx, sizes, corpus, workdir)
    print(
        f"{r['calls_per_event']:.1f} Python calls per delivered event "
        f"({r['calls_in_window']:,} calls, {r['delivered_in_window']:,} events, {r['lost']} lost)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
