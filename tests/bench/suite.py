"""The bench suite: `run_all(sizes)` measures every row, in order, in one run.

tests/bench/__main__.py is the command around it; the smoke test runs it at
`TINY` sizes. Returns the measurements as one dict (report.py renders them).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable

from tests.bench import loadgen, runs
from tests.bench.runs import TINY, Sizes  # noqa: F401 - the public sizes
from tests.bench.servers import Nginx, envelope_body

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def run_all(sizes: Sizes, say: Callable[[str], None] = print, sizes_name: str = "full") -> dict:
    """Every row, measured in this one run; returns the measurements (report.render prints them)."""
    workdir = tempfile.mkdtemp(prefix="esa-bench-", dir="/tmp")
    biggest = max(sizes.naive_events, sizes.inorder_events, sizes.bulk_events, sizes.drain_events,
                  sizes.far_pipelined_events, sizes.burst_events)
    say(f"bench: preparing {biggest:,} events of the simulated mix")
    corpus = loadgen.corpus(biggest)
    dicts = loadgen.event_dicts(min(len(corpus), 5000))
    corpus_file = os.path.join(workdir, "corpus.pickle")
    loadgen.write_corpus(corpus_file, corpus[: max(1, -(-sizes.burst_events // sizes.burst_publishers))])
    r: dict = {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "cpus": os.cpu_count(),
               "load": " ".join(f"{x:.1f}" for x in os.getloadavg()), "sizes": sizes.__dict__,
               "sizes_name": sizes_name,
               "corpus_mean_bytes": sum(len(p) for _, p in corpus) / len(corpus)}
    started = time.monotonic()

    def step(name: str, fn: Callable[[], dict]) -> None:
        t = time.monotonic()
        say(f"bench: {name} ...")
        r[name] = fn()
        say(f"bench: {name} done in {time.monotonic() - t:.1f} s")

    with Nginx() as nginx:
        step("ceiling", lambda: runs.ceiling(nginx, sizes, envelope_body(), workdir))
        step("naive", lambda: runs.naive(nginx, sizes, corpus, workdir))
        step("in_order", lambda: runs.agent_rate(runs.NginxTarget(nginx, "in-order"), corpus, sizes.inorder_events,
                                                 max_in_flight=1))
        step("latency", lambda: runs.latency(sizes, dicts))
        step("far", lambda: runs.far(sizes, corpus))
        step("bulk", lambda: runs.agent_rate(runs.NginxTarget(nginx, "bulk"), corpus, sizes.bulk_events,
                                             bulk=True, bulk_max_events=100, bulk_interval=sizes.bulk_interval))
    step("broker", lambda: runs.broker_burst(sizes, corpus_file))
    step("drain_one", lambda: runs.drain(sizes, corpus, "one"))
    step("drain_bulk", lambda: runs.drain(sizes, corpus, "bulk", bulk=True, bulk_max_events=100,
                                          bulk_interval=sizes.bulk_interval))
    r["elapsed"] = time.monotonic() - started
    shutil.rmtree(workdir, ignore_errors=True)
    return r
