"""The console's rows: what the console costs the node (README, "The console").

- `idle_with_console`: the agent with 3 sinks and its console on, no browser
  connected, left alone as the idle row is (tests/bench/paced.py); its CPU over the
  same window is judged against the idle row of the same run (at most 1.1x).
- `live_follow`: the agent with 1 sink and its console, at a paced 200 events/s,
  once with nobody on Live and once with one browser following Live; the
  difference in % of one core is judged (at most 5 points). The browser is a
  Server-Sent Events client of /live/stream after a real login: what the console
  and the workers do for a follower does not depend on what renders the page, and
  only the agent's processes are counted (supervisor, broker, workers, console),
  never the follower's.
"""

from __future__ import annotations

import socket
import threading
import time

from tests.bench import paced
from tests.bench.runs import TIMEOUT_SLACK, AgentUnderTest, NginxTarget, Sizes, await_ready, kill_tools, publishers
from tests.bench.servers import Nginx
from tests.console.harness import Browser, ConsoleAgent
from tests.helpers import wait_until

LIVE_RATE = 200.0


class ConsoleAgentUnderTest(AgentUnderTest):
    """AgentUnderTest with the console on (one more process: `python -m console`)."""

    def __init__(self, url: str, more_urls: tuple[str, ...] = ()):
        super().__init__(url, more_urls)
        sinks, tuning = self.agent.sinks, self.agent.tuning
        self.agent.cleanup()  # the plain agent's directory, never started
        self.agent = ConsoleAgent(sinks, tuning=tuning)

    def __enter__(self) -> ConsoleAgentUnderTest:
        super().__enter__()
        self.agent.wait_console()
        return self


class LiveFollower:
    """One browser on Live: logged in, reading /live/stream on its own thread until stopped."""

    def __init__(self, agent: ConsoleAgent):
        self.browser = Browser(agent)
        if self.browser.login().status != 303:
            raise RuntimeError("the bench's follower could not log in to the console")
        cookie = "; ".join(f"{k}={v}" for k, v in self.browser.cookies.items())
        self.sock = socket.create_connection(("127.0.0.1", agent.console_port), timeout=30)
        self.sock.sendall(f"GET /live/stream HTTP/1.1\r\nHost: bench\r\nCookie: {cookie}\r\n\r\n".encode())
        self.deliveries = 0
        self._tail = b""
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            while chunk := self.sock.recv(65536):
                data = self._tail + chunk
                self.deliveries += data.count(b"event: delivery\n")
                self._tail = data[-32:]
        except OSError:
            pass  # closed by stop()

    def stop(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.thread.join(5)


def _consumer(a: AgentUnderTest, targets: list[NginxTarget]) -> paced.Consumer:
    for t in targets:
        if t.wait(1, TIMEOUT_SLACK).events < 1:
            raise RuntimeError(f"sink {t.path} never delivered eventsink_started:\n{a.agent.log()[-2000:]}")
    pids = a.pids()
    if len(pids) != 3 + len(targets):
        raise RuntimeError(f"expected a supervisor, a broker, {len(targets)} workers and a console, found {pids}")
    return paced.Consumer(a.agent.publish_endpoint, pids, targets)


def idle_with_console(nginx: Nginx, sizes: Sizes, sinks: int = 3) -> dict:
    """As paced.idle, with the console on and no browser connected."""
    targets = [NginxTarget(nginx, f"idle-console-sink{i + 1}") for i in range(sinks)]
    with ConsoleAgentUnderTest(targets[0].url, more_urls=tuple(t.url for t in targets[1:])) as a:
        consumer = _consumer(a, targets)
        time.sleep(sizes.idle_warmup)  # the sleeps are the measurement: the agent left alone
        start = consumer.sample()
        time.sleep(sizes.idle_seconds)
        end = consumer.sample()
        consumer.check_alive()
    return {
        "sinks": sinks,
        "processes": len(consumer.pids),
        "delivered": end.delivered,
        **paced.window(start, end, sinks),
    }


def live_follow(nginx: Nginx, sizes: Sizes, corpus_file: str, counts: dict[float, int]) -> dict:
    """Paced LIVE_RATE, 1 sink, console on: a run with nobody on Live, then one with one follower."""
    rate, count = LIVE_RATE, counts[LIVE_RATE]
    target = NginxTarget(nginx, "live-console")
    with ConsoleAgentUnderTest(target.url) as a:
        consumer = _consumer(a, [target])
        procs = {k: publishers(consumer.endpoint, corpus_file, count, 1, "publisher", rate) for k in ("none", "one")}
        follower = None
        try:
            await_ready([p for pub in procs.values() for p in pub], "a paced publisher")
            nobody = paced.paced_run(consumer, procs["none"], rate, count, sizes)
            follower = LiveFollower(a.agent)
            wait_until(lambda: a.agent.status()["deliveries"]["streaming"], 10, what="the worker streaming")
            one = paced.paced_run(consumer, procs["one"], rate, count, sizes)
            wait_until(
                lambda: follower.deliveries >= one["delivered"],
                10,
                interval=0.1,
                what="the follower to receive every POST",
            )
        finally:
            if follower is not None:
                follower.stop()
            kill_tools([p for pub in procs.values() for p in pub])
    return {
        "rate": rate,
        "processes": len(consumer.pids),
        "nobody": nobody,
        "one_browser": one,
        "followed": follower.deliveries,
        "extra_core_points": one["core_percent"] - nobody["core_percent"],
    }
