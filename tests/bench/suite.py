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

from tests.bench import calls_per_event, console_cost, ctl_cost, loadgen, paced, publisher_cost, runs
from tests.bench.runs import TINY, Sizes  # noqa: F401 - the public sizes
from tests.bench.servers import Nginx, envelope_body


def median_run(done: list[dict], value: Callable[[dict], float]) -> dict:
    """The run with the median VALUE (the lower middle one of an even count), with every run's value under "runs"."""
    ordered = sorted(done, key=value)
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    chosen["runs"] = [value(d) for d in done]
    return chosen


def options_rows(step: Callable, nginx: Nginx, corpus, sizes: Sizes) -> None:
    """CPU per event with compression = "gzip" and with http_version = "2", in order and in bulk
    (plain HTTP/1.1 is the in_order and bulk rows): one run each."""
    bulk = dict(bulk=True, bulk_max_events=100, bulk_interval=sizes.bulk_interval)
    for shape, n, options in (
        ("in_order", sizes.inorder_events, dict(max_in_flight=1)),
        ("bulk", sizes.bulk_events, bulk),
    ):
        step(
            f"{shape}_gzip",
            lambda i: runs.agent_rate(
                runs.NginxTarget(nginx, f"{shape}-gzip"), corpus, n, compression="gzip", **options
            ),
        )
        step(
            f"{shape}_h2",
            lambda i: runs.agent_rate(
                runs.NginxTarget(nginx, f"{shape}-h2", http2=True), corpus, n, http_version="2", **options
            ),
        )


RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def run_all(sizes: Sizes, say: Callable[[str], None] = print, sizes_name: str = "full") -> dict:
    """Every row, measured in this one run; returns the measurements (report.render prints them)."""
    workdir = tempfile.mkdtemp(prefix="esa-bench-", dir="/tmp")
    biggest = max(
        sizes.naive_events,
        sizes.inorder_events,
        sizes.bulk_events,
        sizes.drain_events,
        sizes.far_pipelined_events,
        sizes.burst_events,
        paced.paced_messages(sizes),
    )
    say(f"bench: preparing {biggest:,} events of the simulated mix")
    corpus = loadgen.corpus(biggest)
    dicts = loadgen.event_dicts(min(len(corpus), 5000))
    corpus_file = os.path.join(workdir, "corpus.pickle")
    loadgen.write_corpus(corpus_file, corpus[: max(1, -(-sizes.burst_events // sizes.burst_publishers))])
    paced_file = os.path.join(workdir, "paced.pickle")
    paced_counts = paced.prepare(corpus, sizes, paced_file)
    r: dict = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "cpus": os.cpu_count(),
        "load": " ".join(f"{x:.1f}" for x in os.getloadavg()),
        "sizes": sizes.__dict__,
        "sizes_name": sizes_name,
        "corpus_mean_bytes": sum(len(p) for _, p in corpus) / len(corpus),
    }
    started = time.monotonic()

    def step(name: str, fn: Callable[[int], dict], repeat: int = 1) -> list[dict]:
        t = time.monotonic()
        say(f"bench: {name} ..." + (f" ({repeat} times, the median counts)" if repeat > 1 else ""))
        done = [fn(i) for i in range(repeat)]
        r[name] = median_run(done, lambda x: x["rate"]) if "rate" in done[0] else done[0]
        say(f"bench: {name} done in {time.monotonic() - t:.1f} s")
        return done

    n = sizes.repeat
    with Nginx() as nginx:
        body = envelope_body()
        ceilings = step("ceiling", lambda i: runs.ceiling(nginx, sizes, body, workdir), n)
        r["ceiling"] = {key: median_run([c[key] for c in ceilings], lambda x: x["rps"]) for key in ("wrk_1", "wrk_32")}
        step("curl", lambda i: paced.curl_ceiling(nginx, sizes, body, workdir, f"curl-{i}"), n)
        step("naive", lambda i: runs.naive(nginx, sizes, corpus, workdir, f"naive-{i}"), n)
        step(
            "in_order",
            lambda i: runs.agent_rate(
                runs.NginxTarget(nginx, f"in-order-{i}"), corpus, sizes.inorder_events, max_in_flight=1
            ),
            n,
        )
        step("latency", lambda i: runs.latency(sizes, dicts))
        step("far", lambda i: runs.far(sizes, corpus))
        step(
            "bulk",
            lambda i: runs.agent_rate(
                runs.NginxTarget(nginx, f"bulk-{i}"),
                corpus,
                sizes.bulk_events,
                bulk=True,
                bulk_max_events=100,
                bulk_interval=sizes.bulk_interval,
            ),
            n,
        )
        options_rows(step, nginx, corpus, sizes)
        # the floor, the agent with one sink and the naive peer, alternated:
        # r["paced_floor"], ["paced_1"], ["paced_naive"]
        step("paced_alternated", lambda i: paced.alternated(nginx, sizes, paced_file, paced_counts, workdir))
        r.update(r.pop("paced_alternated"))
        step("paced_3", lambda i: paced.agent_paced(nginx, sizes, paced_file, paced_counts, 3, "paced-3"))
        step("idle", lambda i: paced.idle(nginx, sizes, sinks=3))
        step("idle_console", lambda i: console_cost.idle_with_console(nginx, sizes, sinks=3))
        step("calls_per_event", lambda i: calls_per_event.calls_per_event(nginx, sizes, corpus, workdir))
        step("live_follow", lambda i: console_cost.live_follow(nginx, sizes, paced_file, paced_counts))
    for name, kind in (("broker", "publisher"), ("broker_lean", "lean")):
        bursts = step(name, lambda i: runs.broker_burst(sizes, corpus_file, kind), n)
        r[name]["proxy"] = median_run([b["proxy"] for b in bursts], lambda x: x["rate"])
        r[name]["lost_worst"] = max(b["lost"] for b in bursts)  # a loss in any run counts
    cost_events = loadgen.event_dicts(sizes.publisher_cost_events)[: sizes.publisher_cost_events]
    step("publisher_cost", lambda i: publisher_cost.publisher_cost(cost_events, max(3, n)))
    step("ctl_status", lambda i: ctl_cost.ctl_status(sizes.ctl_runs))
    bulk = dict(bulk=True, bulk_max_events=100, bulk_interval=sizes.bulk_interval)
    for key, options in (("drain_one", {}), ("drain_bulk", bulk)):
        # Repeated: replay is judged against the drain rate (within 10%), and one run of each swings more.
        drains = step(key, lambda i: runs.drain(sizes, corpus, f"{key}-{i}", **options), n)
        replays = [d["replay"] for d in drains if d["replay"]]
        r[key]["lost"] = max(d["lost"] for d in drains)
        if replays:
            r[key]["replay"] = median_run(replays, lambda x: x["rate"])
            r[key]["replay"]["lost"] = max(x["lost"] for x in replays)
    r["elapsed"] = time.monotonic() - started
    shutil.rmtree(workdir, ignore_errors=True)
    return r
