"""The paced rows ("a Conferencing Node barely notices the agent"): what the agent costs at a realistic rate.

Owns the paced rows (a loadgen publisher process sends the simulated mix at a
fixed rate while the agent, with 1 or 3 sinks to the same nginx, the naive peer
or the floor delivers it), the idle row (the agent with 3 sinks and no events)
and the bare pycurl loop (tests/bench/curl_loop.py: the in-order ceiling of one
connection, and the CPU of one POST at a paced 200/s). The floor
(tests/bench/floor.py) is the agent's data path written as bare as Python allows:
the agent with one sink is judged against it, run for run (`alternated`).

CPU is read from /proc for every process of what is measured (the agent: the
supervisor, the broker and every worker; the naive peer: its one process; the
floor: its two), never the publisher's or nginx's: the sum over all threads of /proc/PID/task/TID/schedstat
(ns on CPU, so an idle agent's few ms are seen), with utime + stime (clock ticks,
which also count threads that have exited) beside it as a check. A window opens
once the warm-up's events have been delivered (process start-up, first
connections and the eventsink_started POSTs are not counted) and closes once the
window's events have been; CPU per delivered event is the window's CPU over the
events delivered in it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, replace

from tests.bench import loadgen
from tests.bench.runs import (
    TIMEOUT_SLACK,
    AgentUnderTest,
    NginxTarget,
    Sizes,
    await_ready,
    deadline_for,
    finish_tools,
    kill_tools,
    proc_cpu,
    publishers,
    send_go,
    start_tool,
    task_cpu_ns,
)
from tests.bench.servers import Nginx
from tests.e2e.harness import REPO

DELIVERY_IDLE = 5.0  # s without a new delivery after which a wait gives up
POLL_INTERVAL = 0.02
FLOOR_RATE = 200.0  # ev/s: the rate of the floor row and of the agent / floor goal


@dataclass(frozen=True)
class CpuSample:
    wall: float  # time.time()
    cpu_ns: int  # schedstat, every thread of every process
    ticks_seconds: float  # utime + stime, every process
    delivered: int


class Consumer:
    """What the publisher feeds: its bus endpoint, its processes, and the nginx paths it delivers to."""

    def __init__(self, endpoint: str, pids: list[int], targets: list[NginxTarget]):
        self.endpoint, self.pids, self.targets = endpoint, pids, targets

    @property
    def sinks(self) -> int:
        return len(self.targets)

    def delivered(self) -> int:
        return sum(t.delivered() for t in self.targets)

    def sample(self) -> CpuSample:
        delivered = self.delivered()
        return CpuSample(
            time.time(), sum(task_cpu_ns(p) for p in self.pids), sum(proc_cpu(p) for p in self.pids), delivered
        )

    def wait_delivered(self, count: int, timeout: float) -> int:
        """Poll until COUNT events were delivered (all paths), TIMEOUT passes or none came for DELIVERY_IDLE s."""
        deadline = time.monotonic() + timeout
        seen, seen_at = -1, time.monotonic()
        while True:
            now_delivered, now = self.delivered(), time.monotonic()
            if now_delivered >= count or now >= deadline:
                return now_delivered
            if now_delivered != seen:
                seen, seen_at = now_delivered, now
            elif now - seen_at >= DELIVERY_IDLE:
                return now_delivered
            time.sleep(POLL_INTERVAL)

    def reach(self, count: int, timeout: float, what: str) -> CpuSample:
        got = self.wait_delivered(count, timeout)
        if got < count:
            raise RuntimeError(f"{what}: {got} of {count} events delivered within {timeout:.0f} s")
        return self.sample()

    def check_alive(self) -> None:
        gone = [p for p in self.pids if not os.path.exists(f"/proc/{p}")]
        if gone:
            raise RuntimeError(f"processes {gone} exited during the measurement (a restart would hide CPU)")


def window(a: CpuSample, b: CpuSample, sinks: int) -> dict:
    """The CPU figures of the window from A to B."""
    seconds = b.wall - a.wall
    cpu = (b.cpu_ns - a.cpu_ns) / 1e9
    delivered = b.delivered - a.delivered
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "cpu_ticks_seconds": b.ticks_seconds - a.ticks_seconds,
        "delivered_in_window": delivered,
        "core_percent": cpu / seconds * 100 if seconds > 0 else 0.0,
        "ticks_core_percent": (b.ticks_seconds - a.ticks_seconds) / seconds * 100 if seconds > 0 else 0.0,
        "cpu_us_per_delivered": cpu / max(1, delivered) * 1e6,
        "cpu_us_per_journaled": cpu / max(1, delivered / sinks) * 1e6,
    }


# ------------------------------------------------------------------ the paced load


def prepare(corpus: loadgen.Corpus, sizes: Sizes, path: str) -> dict[float, int]:
    """Writes the paced publishers' corpus file to PATH; returns each rate's message count (whole actions,
    so no participant_disconnected waits for a media message that never comes)."""
    counts = {
        rate: len(corpus.take(round(rate * (sizes.paced_warmup + sizes.paced_seconds + sizes.paced_tail))))
        for rate in sizes.paced_rates
    }
    loadgen.write_corpus(path, corpus.take(max(counts.values())))
    return counts


def paced_messages(sizes: Sizes) -> int:
    """How many corpus messages the paced rows need at most (before rounding up to whole actions)."""
    return round(max(sizes.paced_rates) * (sizes.paced_warmup + sizes.paced_seconds + sizes.paced_tail))


def paced_rates(consumer: Consumer, corpus_file: str, counts: dict[float, int], sizes: Sizes) -> list[dict]:
    """Each rate of `sizes.paced_rates` in turn, ascending; every rate's publisher process is started (and
    subscribed) first, so a run starts with a "go" and no process start-up in between."""
    rates = sorted(sizes.paced_rates)
    procs = {rate: publishers(consumer.endpoint, corpus_file, counts[rate], 1, "publisher", rate) for rate in rates}
    try:
        await_ready([p for pub in procs.values() for p in pub], "a paced publisher")
        return [paced_run(consumer, procs[rate], rate, counts[rate], sizes) for rate in rates]
    finally:
        kill_tools([p for pub in procs.values() for p in pub])


def paced_run(consumer: Consumer, pub: list[subprocess.Popen], rate: float, count: int, sizes: Sizes) -> dict:
    """PUB (one ready publisher process) sends COUNT messages at RATE; CPU of CONSUMER's processes over the
    measured window."""
    k = consumer.sinks
    warm, in_window = max(1, round(rate * sizes.paced_warmup)), max(1, round(rate * sizes.paced_seconds))
    before = consumer.delivered()
    t0 = send_go(pub)
    a = consumer.reach(before + k * warm, deadline_for(warm), f"warm-up at {rate:g} ev/s")
    b = consumer.reach(
        before + k * (warm + in_window), deadline_for(warm + in_window), f"measured window at {rate:g} ev/s"
    )
    delivered = consumer.wait_delivered(before + k * count, deadline_for(count)) - before
    _, sent_t0, sent_t1, sent = finish_tools(pub, TIMEOUT_SLACK)[0].split()
    consumer.check_alive()
    published_seconds = float(sent_t1) - float(sent_t0)
    # events published by the time the window closed that a sink had not delivered yet: > 0 means it lagged
    lag = rate * (b.wall - t0) - (b.delivered - before) / k
    return {
        "paced_at": rate,
        "sinks": k,
        "published": int(sent),
        "events": count,
        "publish_rate": int(sent) / published_seconds if published_seconds > 0 else 0.0,
        "delivered": delivered,
        "lost": k * count - delivered,
        "lag_at_close": max(0.0, lag),
        **window(a, b, k),
    }


def agent_paced(nginx: Nginx, sizes: Sizes, corpus_file: str, counts: dict[float, int], sinks: int, label: str) -> dict:
    """The whole agent with SINKS sinks (all to NGINX), each rate of `sizes.paced_rates` in turn."""
    targets = [NginxTarget(nginx, f"{label}-sink{i + 1}") for i in range(sinks)]
    with AgentUnderTest(targets[0].url, more_urls=tuple(t.url for t in targets[1:])) as a:
        consumer = _agent_consumer(a, targets)
        by_rate = paced_rates(consumer, corpus_file, counts, sizes)
    return {"sinks": sinks, "processes": len(consumer.pids), "by_rate": by_rate}


def naive_paced(
    nginx: Nginx, sizes: Sizes, corpus_file: str, counts: dict[float, int], workdir: str, label: str
) -> dict:
    """The naive peer (one process) at each rate of `sizes.paced_rates`, fed by the same paced publisher."""
    target = NginxTarget(nginx, label)
    endpoint = f"ipc://{workdir}/{label}.sock"
    total = sum(counts[rate] for rate in sizes.paced_rates)
    peer = start_tool([sys.executable, "-m", "tests.bench.naive_peer", endpoint, target.url, str(total)])
    try:
        await_ready([peer], "the naive peer")
        consumer = Consumer(endpoint, [peer.pid], [target])
        by_rate = paced_rates(consumer, corpus_file, counts, sizes)
        finish_tools([peer], TIMEOUT_SLACK)
    finally:
        kill_tools([peer])
    return {"sinks": 1, "processes": 1, "by_rate": by_rate}


def floor_paced(
    nginx: Nginx, sizes: Sizes, corpus_file: str, counts: dict[float, int], workdir: str, label: str
) -> dict:
    """The floor (tests/bench/floor.py: its journal and its poster process) at each rate of `sizes.paced_rates`,
    fed by the same paced publisher; CPU of both processes."""
    target = NginxTarget(nginx, label)
    endpoint, relay = f"ipc://{workdir}/{label}.sock", f"ipc://{workdir}/{label}-relay.sock"
    total = str(sum(counts[rate] for rate in sizes.paced_rates))
    # the poster first: it connects and subscribes, and the journal says "ready" once that subscription arrived
    poster = start_tool([sys.executable, "-m", "tests.bench.floor", "post", relay, target.url, total])
    journal = start_tool(
        [
            sys.executable,
            "-m",
            "tests.bench.floor",
            "journal",
            endpoint,
            relay,
            os.path.join(workdir, f"{label}.db"),
            total,
        ]
    )
    try:
        await_ready([poster, journal], "the floor")
        consumer = Consumer(endpoint, [journal.pid, poster.pid], [target])
        by_rate = paced_rates(consumer, corpus_file, counts, sizes)
        finish_tools([journal, poster], TIMEOUT_SLACK)
    finally:
        kill_tools([journal, poster])
    return {"sinks": 1, "processes": 2, "by_rate": by_rate}


def alternated(nginx: Nginx, sizes: Sizes, corpus_file: str, counts: dict[float, int], workdir: str) -> dict:
    """The floor, the agent with one sink and the naive peer, one after the other, `sizes.repeat` rounds: a
    shared machine's noise then falls on all three alike. The floor runs at FLOOR_RATE only; the agent and
    the naive peer at every paced rate in the first round, at FLOOR_RATE in the others. Per rate, the run
    with the median CPU per delivered event counts (every round's figure under "runs")."""
    rounds: dict[str, list[dict]] = {"paced_floor": [], "paced_1": [], "paced_naive": []}
    floor_only = replace(sizes, paced_rates=(FLOOR_RATE,))
    for i in range(sizes.repeat):
        these = sizes if i == 0 else floor_only
        rounds["paced_floor"].append(floor_paced(nginx, floor_only, corpus_file, counts, workdir, f"paced-floor-{i}"))
        rounds["paced_1"].append(agent_paced(nginx, these, corpus_file, counts, 1, f"paced-1-{i}"))
        rounds["paced_naive"].append(naive_paced(nginx, these, corpus_file, counts, workdir, f"paced-naive-{i}"))
    return {key: _median_by_rate(done) for key, done in rounds.items()}


def _median_by_rate(done: list[dict]) -> dict:
    """DONE's first result, with each rate's run the one of median CPU per delivered event (the lower middle
    of an even count) over every result that ran it."""
    merged = dict(done[0])
    merged["by_rate"] = []
    for rate in sorted(run["paced_at"] for run in done[0]["by_rate"]):
        runs = [run for d in done for run in d["by_rate"] if run["paced_at"] == rate]
        ordered = sorted(runs, key=lambda run: run["cpu_us_per_delivered"])
        merged["by_rate"].append(
            {**ordered[(len(ordered) - 1) // 2], "runs": [run["cpu_us_per_delivered"] for run in runs]}
        )
    return merged


def idle(nginx: Nginx, sizes: Sizes, sinks: int = 3) -> dict:
    """The agent with SINKS sinks and no events: % of one core over `sizes.idle_seconds`, after a warm-up."""
    targets = [NginxTarget(nginx, f"idle-sink{i + 1}") for i in range(sinks)]
    with AgentUnderTest(targets[0].url, more_urls=tuple(t.url for t in targets[1:])) as a:
        consumer = _agent_consumer(a, targets)
        # the sleeps are the measurement (nothing is awaited): the agent left alone, then the window
        time.sleep(sizes.idle_warmup)
        start = consumer.sample()
        time.sleep(sizes.idle_seconds)
        end = consumer.sample()
        consumer.check_alive()
    return {"sinks": sinks, "processes": len(consumer.pids), "delivered": end.delivered, **window(start, end, sinks)}


def _agent_consumer(a: AgentUnderTest, targets: list[NginxTarget]) -> Consumer:
    """Once every sink has delivered its eventsink_started: the agent's bus and its processes."""
    for t in targets:
        if t.wait(1, TIMEOUT_SLACK).events < 1:
            raise RuntimeError(f"sink {t.path} never delivered eventsink_started:\n{a.agent.log()[-2000:]}")
    pids = a.pids()
    if len(pids) != 2 + len(targets):
        raise RuntimeError(f"expected a supervisor, a broker and {len(targets)} workers, found pids {pids}")
    return Consumer(a.agent.publish_endpoint, pids, targets)


# ------------------------------------------------------------------ the bare pycurl loop


def curl_ceiling(nginx: Nginx, sizes: Sizes, body: bytes, workdir: str, label: str = "curl") -> dict:
    """tests/bench/curl_loop.py flat out (its rate: the in-order ceiling) and paced (its CPU per POST)."""
    body_file = os.path.join(workdir, "envelope.json")
    with open(body_file, "wb") as fh:
        fh.write(body)
    paced_posts = max(1, round(sizes.curl_paced_rate * sizes.curl_paced_seconds))
    flat = _curl_loop(f"{nginx.url}/log/{label}-flat", body_file, sizes.curl_posts, 0.0)
    paced = _curl_loop(f"{nginx.url}/log/{label}-paced", body_file, paced_posts, sizes.curl_paced_rate)
    return {"rate": flat["rate"], "flat": flat, "paced": paced}


def _curl_loop(url: str, body_file: str, count: int, rate: float) -> dict:
    limit = count / max(rate, 1000.0) + TIMEOUT_SLACK * 2
    done = subprocess.run(
        [sys.executable, "-m", "tests.bench.curl_loop", url, body_file, str(count), repr(rate)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=limit,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the pycurl loop failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout)
