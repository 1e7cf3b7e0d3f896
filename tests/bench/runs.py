"""The bench's measurements, one function per kind of row; each returns a dict of figures.

Every load loop is bounded in count and in time (TIMEOUT_* below and the
`Sizes`). Rates are events over wall time: from the bench's first publish
(`time.time()`) to the receiver's record of the last delivered event (nginx's
`$msec`, or the Python receiver's arrival time), so nothing in between is left
out. A whole agent runs through tests/e2e/harness.py's `Agent` (real
supervisor, broker and worker processes, real config file).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

from bus.journal import Journal
from common.config import encode_spec, parse
from tests.bench import loadgen
from tests.bench.receiver import FarReceiver
from tests.bench.servers import Nginx, PathTally, free_port, run_wrk
from tests.e2e.harness import REPO, Agent, render_toml, sink
from tests.helpers import wait_until

CLK_TCK = os.sysconf("SC_CLK_TCK")
MIN_RATE = 50.0  # events/s below which a run is given up on (bounds every wait)
TIMEOUT_SLACK = 30.0  # s added to every computed deadline
AGENT_TUNING = {
    "max_background_posts": 10_000_000,  # a bench backlog must not trip the concurrency alarm
    "initial_retry_backoff": 0.05,  # drain rows: the outage's backoff stays short
    "max_retry_backoff": 3600,
}


@dataclass(frozen=True)
class Sizes:
    """How much each row does (the full bench; `TINY` for the smoke test)."""

    wrk_seconds: float = 3
    naive_events: int = 4000
    inorder_events: int = 20_000
    latency_rate: float = 500
    latency_seconds: float = 6
    far_delay: float = 0.02
    far_inorder_events: int = 300
    far_pipelined_events: int = 2400
    bulk_events: int = 100_000
    bulk_interval: float = 0.05
    burst_events: int = 100_000
    burst_publishers: int = 4
    drain_events: int = 100_000
    rss_small_backlog: int = 1000
    curl_posts: int = 50_000  # the bare pycurl loop, flat out
    curl_paced_rate: float = 200
    curl_paced_seconds: float = 10
    paced_rates: tuple[float, ...] = (50, 200, 1000)
    paced_warmup: float = 3  # s of each paced run before its measured window opens
    paced_seconds: float = 10  # the measured window
    paced_tail: float = 1  # s of events published after the window, so it closes while the load is still on
    idle_warmup: float = 3
    idle_seconds: float = 30
    publisher_cost_events: int = 100_000  # per run of the Publisher cost row, old and new
    repeat: int = 3  # runs of the rows that make the ratios (1, 2, 3, 5, 6); the median counts
    ctl_runs: int = 20  # runs of each of eventsinkctl status and curl --unix-socket (row 12)


TINY = Sizes(
    wrk_seconds=1,
    naive_events=200,
    inorder_events=200,
    latency_seconds=0.4,
    far_inorder_events=10,
    far_pipelined_events=40,
    bulk_events=300,
    burst_events=400,
    drain_events=300,
    rss_small_backlog=100,
    curl_posts=300,
    curl_paced_seconds=0.5,
    paced_warmup=0.15,
    paced_seconds=0.3,
    paced_tail=0.05,
    idle_warmup=0.2,
    idle_seconds=2,
    publisher_cost_events=500,
    repeat=1,
    ctl_runs=2,
)


def deadline_for(events: int, rate: float = MIN_RATE) -> float:
    return events / rate + TIMEOUT_SLACK


# ------------------------------------------------------------------ processes


def proc_cpu(pid: int) -> float:
    """utime + stime of PID in seconds (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return 0.0


def task_cpu_ns(pid: int) -> int:
    """ns on CPU of every live thread of PID (/proc/PID/task/*/schedstat); 0 when it is gone."""
    total = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as fh:
                total += int(fh.read().split()[0])
        except (OSError, IndexError, ValueError):
            pass  # the thread has just exited
    return total


def proc_rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


class AgentUnderTest:
    """A whole agent with one sink named "bench" (and "bench-2", ... at MORE_URLS, same options), and a
    FastPublisher connected to its bus."""

    def __init__(self, url: str, more_urls: tuple[str, ...] = (), **sink_options):
        sinks = [sink("bench", url, **sink_options)]
        sinks += [sink(f"bench-{i}", more, **sink_options) for i, more in enumerate(more_urls, 2)]
        self.agent = Agent(sinks, tuning=dict(AGENT_TUNING))
        self.pub: loadgen.FastPublisher | None = None

    def __enter__(self) -> AgentUnderTest:
        try:
            self.agent.start()
            self.pub = loadgen.FastPublisher(self.agent.publish_endpoint, linger_ms=5000)
            self.agent.bus_ready(self.pub)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.pub is not None:
            self.pub.close()
            self.pub = None
        # SIGKILL, not a graceful stop: nothing is measured after this and the e2e tests cover the
        # graceful stop; it saves ~1 s per agent (the smoke test runs seven).
        self.agent.cleanup()

    def pids(self) -> list[int]:
        assert self.agent.proc is not None
        return [self.agent.proc.pid, *self.agent.child_pids()]

    def cpu(self) -> float:
        """CPU seconds used so far by the supervisor, the broker and the workers."""
        return sum(proc_cpu(pid) for pid in self.pids())

    def task_cpu(self) -> float:
        """The same from schedstat (ns): never 0 for a run that did any work, as clock ticks can be."""
        return sum(task_cpu_ns(pid) for pid in self.pids()) / 1e9

    def status(self) -> dict:
        return self.agent.sink_status("bench")

    def send(self, messages: list[tuple[bytes, bytes]]) -> None:
        assert self.pub is not None
        send = self.pub.send
        for topic, payload in messages:
            send(topic, payload)

    def wait_backlog(self, count: int, journaled: int, timeout: float) -> dict:
        def ready():  # the backlog counts journal events (not the undelivered eventsink_started)
            st = self.agent.status()
            sinks = st["sinks"]
            return st if st["bus"]["received"] >= journaled and sinks and sinks[0]["backlog"] >= count else None

        return wait_until(ready, timeout, interval=0.05, what=f"a backlog of {count}")


# ------------------------------------------------------------------ receivers as targets


class NginxTarget:
    def __init__(self, nginx: Nginx, label: str, http2: bool = False):
        self.path = f"/log/{label}"
        self.url = (nginx.h2_url if http2 else nginx.url) + self.path
        self.nginx = nginx

    def wait(self, count: int, timeout: float) -> PathTally:
        return self.nginx.log.wait_events(self.path, count, timeout)

    def delivered(self) -> int:
        """Events answered 2xx on this path so far."""
        return self.nginx.log.tally(self.path).events


class FarTarget:
    def __init__(self, receiver: FarReceiver, label: str):
        self.url = f"{receiver.url}/{label}"
        self.receiver = receiver

    def wait(self, count: int, timeout: float) -> PathTally:
        st = self.receiver.wait_events(count, timeout)
        return PathTally(
            requests=st["requests"], events=st["events"], ok=st["requests"], first=st["first"], last=st["last"]
        )


def _rate(events: int, seconds: float) -> float:
    return events / seconds if seconds > 0 else 0.0


NGINX_TIME_STEP = 0.001  # s: nginx's $msec, the time a drain's answers are stamped with, has ms steps


def _answered_span(tally) -> float:
    """From the first answered request to the last, at least one step of nginx's clock: answers
    within the same millisecond (a few bulk envelopes at tiny sizes) span up to a step, not zero."""
    return max(tally.last - tally.first, NGINX_TIME_STEP) if tally.events else 0.0


# ------------------------------------------------------------------ rows


def ceiling(nginx: Nginx, sizes: Sizes, body: bytes, workdir: str) -> dict:
    """Row 1: wrk against nginx, 1 and 32 connections."""
    one = run_wrk(nginx.url + "/", 1, sizes.wrk_seconds, body, workdir)
    many = run_wrk(nginx.url + "/", 32, sizes.wrk_seconds, body, workdir)
    return {"wrk_1": one, "wrk_32": many}


def naive(nginx: Nginx, sizes: Sizes, corpus: loadgen.Corpus, workdir: str, label: str = "naive") -> dict:
    """Row 2: the naive peer fed by its own FastPublisher, against nginx."""
    messages = corpus.take(sizes.naive_events)
    n = len(messages)
    target = NginxTarget(nginx, label)
    endpoint = f"ipc://{workdir}/naive.sock"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.bench.naive_peer", endpoint, target.url, str(n)],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        cwd=REPO,
        text=True,
    )
    pub = None
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the naive peer did not start")
        pub = loadgen.FastPublisher(endpoint, linger_ms=0)
        if not pub.wait_ready(10):
            raise RuntimeError("the naive peer did not subscribe")
        t0 = time.time()
        for topic, payload in messages:
            pub.send(topic, payload)
        tally = target.wait(n, deadline_for(n))
        cpu = proc_cpu(proc.pid)
        proc.wait(TIMEOUT_SLACK)
    finally:
        if pub is not None:
            pub.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    seconds = tally.last - t0
    return {
        "events": tally.events,
        "lost": n - tally.events,
        "seconds": seconds,
        "rate": _rate(tally.events, seconds),
        "cpu_per_10k": cpu / max(1, tally.events) * 10_000,
    }


def agent_rate(target, corpus: loadgen.Corpus, n: int, **sink_options) -> dict:
    """The agent with one sink at TARGET; N events published at once; events/s to the last 2xx."""
    messages = corpus.take(n)
    n = len(messages)
    with AgentUnderTest(target.url, **sink_options) as a:
        started = target.wait(1, TIMEOUT_SLACK)  # eventsink_started: the sink is up
        if started.events < 1:
            raise RuntimeError(f"the sink never delivered eventsink_started:\n{a.agent.log()[-2000:]}")
        cpu0, task0 = a.cpu(), a.task_cpu()
        t0 = time.time()
        a.send(messages)
        tally = target.wait(n + 1, deadline_for(n))
        cpu, task = a.cpu() - cpu0, a.task_cpu() - task0
        status = a.status()
    events = tally.events - 1
    seconds = tally.last - t0
    return {
        "events": events,
        "lost": n - events,
        "seconds": seconds,
        "rate": _rate(events, seconds),
        "requests": tally.requests - 1,
        "cpu_seconds": cpu,
        "cpu_per_10k": cpu / max(1, events) * 10_000,
        "cpu_task_seconds": task,
        "failures": status["failures"],
        "options": sink_options,
    }


def latency(sizes: Sizes, dicts: list[tuple[str, dict]]) -> dict:
    """Row 3b: publish-to-receiver latency at a paced rate, in order, against the Python receiver (no delay)."""
    total = max(1, int(sizes.latency_rate * sizes.latency_seconds))
    with FarReceiver(0.0) as receiver:
        target = FarTarget(receiver, "latency")
        with AgentUnderTest(target.url, max_in_flight=1) as a:
            target.wait(1, TIMEOUT_SLACK)
            assert a.pub is not None
            start = time.monotonic()
            for i in range(total):
                event, data = dicts[i % len(dicts)]
                due = start + i / sizes.latency_rate
                pause = due - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                a.pub.publish(event, data)
            sent_seconds = time.monotonic() - start
            target.wait(total + 1, deadline_for(total))
            stats = receiver.stats()
    lat = sorted(stats["latencies"])
    if not lat:
        raise RuntimeError("the latency receiver recorded nothing")

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(round(p / 100 * (len(lat) - 1))))]

    return {
        "events": len(lat),
        "lost": total - len(lat),
        "rate": total / sent_seconds if sent_seconds else 0.0,
        "p50_ms": pct(50) * 1000,
        "p99_ms": pct(99) * 1000,
        "max_ms": lat[-1] * 1000,
        "mean_ms": statistics.fmean(lat) * 1000,
    }


def far(sizes: Sizes, corpus: loadgen.Corpus) -> dict:
    """Row 4: in order vs 8 in flight against the receiver that takes FAR_DELAY per request."""
    out = {}
    for key, n, in_flight in (
        ("in_order", sizes.far_inorder_events, 1),
        ("in_flight_8", sizes.far_pipelined_events, 8),
    ):
        with FarReceiver(sizes.far_delay) as receiver:
            out[key] = agent_rate(FarTarget(receiver, key), corpus, n, max_in_flight=in_flight)
            out[key]["max_concurrent"] = receiver.stats()["max_concurrent"]
    out["delay_ms"] = sizes.far_delay * 1000
    return out


def start_tool(cmd: list[str]) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=REPO, text=True)


def await_ready(procs: list[subprocess.Popen], what: str) -> None:
    for p in procs:
        assert p.stdout is not None
        line = p.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(f"{what} did not get ready ({line or 'exited'})")


def send_go(publishers: list[subprocess.Popen]) -> float:
    t0 = time.time()
    for p in publishers:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    return t0


def finish_tools(procs: list[subprocess.Popen], timeout: float) -> list[str]:
    out = []
    for p in procs:
        try:
            stdout, _ = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            stdout, _ = p.communicate()
        out.append(stdout.strip())
    return out


def kill_tools(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def publishers(
    endpoint: str, corpus_file: str, total: int, count: int, kind: str, rate: float = 0.0
) -> list[subprocess.Popen]:
    """COUNT loadgen publisher processes sharing TOTAL messages (flat out, or each paced at RATE)."""
    share = [total // count + (1 if i < total % count else 0) for i in range(count)]
    return [
        start_tool(
            [sys.executable, "-m", "tests.bench.loadgen", "publish", endpoint, corpus_file, str(k), kind, repr(rate)]
        )
        for k in share
    ]


def broker_burst(sizes: Sizes, corpus_file: str, kind: str = "publisher") -> dict:
    """Row 6: the broker alone (journal + fan-out) vs a raw ZeroMQ proxy, same publishers, same run.

    KIND `publisher`: the publishers use bus.publisher.Publisher, the client conference processes
    use; `lean`: raw ZeroMQ sends with no Python overhead (loadgen.FastPublisher), so the proxy
    is not held back by its publishers."""
    n, k = sizes.burst_events, sizes.burst_publishers
    base = tempfile.mkdtemp(prefix="esa-", dir="/tmp")
    procs: list[subprocess.Popen] = []
    try:
        text = render_toml(
            {"address": "10.44.99.2", "location": "Oslo"},
            {"runtime_dir": f"{base}/run", "state_dir": f"{base}/state"},
            {},
            [],
        )
        config = parse(text).config
        assert config is not None
        journal_path = f"{base}/state/journal.sqlite3"
        with Journal(journal_path) as journal:
            journal.ensure_cursor("bench")  # a cursor at 0: housekeeping keeps every row to count
        log = open(f"{base}/broker.log", "wb")
        broker = subprocess.Popen(
            [sys.executable, "-m", "bus.broker"], stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, cwd=REPO
        )
        log.close()
        procs.append(broker)
        assert broker.stdin is not None
        broker.stdin.write(encode_spec(config))
        broker.stdin.close()
        runtime = f"{base}/run"
        wait_until(
            lambda: os.path.exists(f"{runtime}/publish.sock") and os.path.exists(f"{runtime}/fanout.sock"),
            15,
            what="the broker's sockets",
        )
        counter = start_tool(
            [sys.executable, "-m", "tests.bench.loadgen", "count", f"ipc://{runtime}/fanout.sock", str(n), "5"]
        )
        procs.append(counter)
        await_ready([counter], "the fan-out counter")
        pubs = publishers(f"ipc://{runtime}/publish.sock", corpus_file, n, k, kind)
        procs += pubs
        await_ready(pubs, "a publisher")
        db = sqlite3.connect(f"file:{journal_path}?mode=ro", uri=True, isolation_level=None)
        cpu0 = proc_cpu(broker.pid)
        t0 = send_go(pubs)
        head, done_at, seen_at = 0, time.time(), time.monotonic()
        deadline = time.monotonic() + deadline_for(n, 1000)
        while head < n and time.monotonic() < deadline and time.monotonic() - seen_at < 5:
            row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
            now = row[0] if row else 0
            if now > head:
                head, done_at, seen_at = now, time.time(), time.monotonic()
            time.sleep(0.002)
        cpu = proc_cpu(broker.pid) - cpu0
        rows = db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        db.close()
        finish_tools(pubs, TIMEOUT_SLACK)
        fanned = int(finish_tools([counter], TIMEOUT_SLACK)[0].split()[0] or 0)
        broker.terminate()
        broker.wait(TIMEOUT_SLACK)
        seconds = done_at - t0
        result = {
            "events": n,
            "journaled": rows,
            "lost": n - rows,
            "seconds": seconds,
            "rate": _rate(rows, seconds),
            "fanned_out": fanned,
            "publishers": k,
            "kind": kind,
            "cpu_us_per_event": cpu / max(1, rows) * 1e6,
        }
        result["proxy"] = _raw_proxy(n, k, corpus_file, base, kind)
        return result
    finally:
        kill_tools(procs)
        shutil.rmtree(base, ignore_errors=True)


def _raw_proxy(n: int, k: int, corpus_file: str, base: str, kind: str) -> dict:
    inbound, outbound = f"ipc://{base}/proxy-in.sock", f"ipc://{base}/proxy-out.sock"
    procs: list[subprocess.Popen] = []
    try:
        proxy = start_tool([sys.executable, "-m", "tests.bench.loadgen", "proxy", inbound, outbound])
        procs.append(proxy)
        await_ready([proxy], "the raw proxy")
        counter = start_tool([sys.executable, "-m", "tests.bench.loadgen", "count", outbound, str(n), "3"])
        procs.append(counter)
        await_ready([counter], "the proxy's counter")
        pubs = publishers(inbound, corpus_file, n, k, kind)
        procs += pubs
        await_ready(pubs, "a publisher")
        t0 = send_go(pubs)
        finish_tools(pubs, deadline_for(n, 1000))
        count, _first, last = finish_tools([counter], deadline_for(n, 1000))[0].split()
        seconds = float(last) - t0
        return {
            "events": n,
            "received": int(count),
            "lost": n - int(count),
            "seconds": seconds,
            "rate": _rate(int(count), seconds),
        }
    finally:
        kill_tools(procs)


def drain(sizes: Sizes, corpus: loadgen.Corpus, label: str, **sink_options) -> dict:
    """Rows 7 and 8: a backlog journaled while the receiver's port is closed, then nginx comes up on it.

    On the way: the worker's RSS at the small and at the full backlog."""
    first = corpus.take(min(sizes.rss_small_backlog, sizes.drain_events))
    messages = corpus.take(sizes.drain_events)
    n, small = len(messages), len(first)
    port = free_port()
    nginx = Nginx(port)
    target = NginxTarget(nginx, f"drain-{label}")
    try:
        with AgentUnderTest(target.url, **sink_options) as a:
            pid = a.status()["pid"]
            a.send(first)
            a.wait_backlog(small, small, deadline_for(small, 1000))
            rss_small = proc_rss_kb(pid)
            a.send(messages[small:])
            a.wait_backlog(n, n, deadline_for(n, 1000))
            rss_full = proc_rss_kb(pid)
            if a.status()["pid"] != pid:
                raise RuntimeError("the worker was restarted during the backlog")
            nginx.start()
            up = nginx.started_at
            tally = target.wait(n + 1, deadline_for(n))
            cpu = a.cpu()
            replay = replay_all(a, target, n) if tally.events == n + 1 else {}
    finally:
        nginx.cleanup()
    return {
        "events": tally.events,
        "lost": n + 1 - tally.events,
        "seconds": tally.last - up,
        "delivering_seconds": tally.last - tally.first,
        "backoff_wait": tally.first - up,
        "rate": _rate(tally.events, _answered_span(tally)),
        "rss_small_kb": rss_small,
        "rss_full_kb": rss_full,
        "rss_small_backlog": small,
        "rss_full_backlog": n,
        "agent_cpu_seconds": cpu,
        "options": sink_options,
        "replay": replay,
    }


def replay_all(a: AgentUnderTest, target: NginxTarget, n: int) -> dict:
    """Row 7b: the N events just drained, replayed (they are retained) to the same receiver, timed the same
    way as the drain (first to last 2xx). The path's tally starts afresh: the drain's lines are all read."""
    target.nginx.log.tallies.pop(target.path, None)
    asked = time.time()
    status, answer = a.agent.client().call("POST", "/v1/sinks/bench/replay", {"since": 0})
    if status != 200 or answer.get("events") != n:
        raise RuntimeError(f"replay answered {status} {answer}")
    tally = target.wait(n + 1, deadline_for(n))
    return {
        "events": tally.events,
        "lost": n + 1 - tally.events,
        "delivering_seconds": tally.last - tally.first,
        "rate": _rate(tally.events, _answered_span(tally)),
        "seconds": tally.last - asked,
    }
