"""The soak's rig: one real agent with four sinks, their receivers, and the publishers.

Owns `SoakRig`: the four sinks of the soak (in order; eight in flight with
dead letters; bulk; version 1), one real `Receiver` per sink behind its own
`FaultProxy` (so a receiver can also reset connections or go away with its
port closed), the agent as a real process in its own process group (so a
"kill -9 of the whole agent" is one `killpg`, and nothing is left behind at
the end, even on failure), the config rewrites a reload applies, and the
publisher processes (tests/faults/loadgen.py), each in its own process group.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

from tests.e2e.harness import REPO, Agent, sink
from tests.faults.proxy import FaultProxy
from tests.helpers import wait_until
from tools.receiver import Receiver

# Backoff short enough that a healed receiver is retried within seconds; the alarm's limit far
# above any wait an outage of the soak reaches (its faults last seconds), so it never stops a sink.
TUNING = {
    "connection_timeout": 1,
    "response_timeout": 1,
    "initial_retry_backoff": 0.1,
    "max_retry_backoff": 600,
    "media_streams_wait": 1,
    "cache_expiration": 2,
    "max_background_posts": 1_000_000,
}
RESPONSE_TIMEOUT = TUNING["response_timeout"]
MEDIA_STREAMS_WAIT = TUNING["media_streams_wait"]
DEAD_LETTER_SINK = "pipelined"
SINKS = {  # name -> its sink table (url added by the rig)
    "ordered": {"max_in_flight": 1},
    DEAD_LETTER_SINK: {"max_in_flight": 8, "dead_letter_after": 2},
    "bulk": {"max_in_flight": 2, "bulk": True, "bulk_max_events": 20, "bulk_interval": 0.2},
    "v1": {"max_in_flight": 4, "version": 1},
}
BULK_MAX_EVENTS = SINKS["bulk"]["bulk_max_events"]
RELOAD_HEADER = "X-Soak-Reload"  # a reload really changes a sink: this header's value on its POSTs


class SoakAgent(Agent):
    """The harness's agent, started in a process group of its own."""

    NEW_SESSION = True  # kill_group() kills the whole group
    START_TIMEOUT = 60.0

    def kill_group(self) -> None:
        """kill -9 of every process of the agent (supervisor, broker, workers, anything they started)."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()

    def kill_all(self) -> None:
        self.kill_group()


@dataclass
class PublisherProcess:
    """One loadgen process: PREFIX-i fids, through `Publisher` or a bare PUB (CLIENT)."""

    prefix: str
    client: str
    proc: subprocess.Popen
    out: str = ""
    sent: int | None = None
    result: dict | None = None

    def poll_output(self) -> None:
        fd = self.proc.stdout.fileno()
        while select.select([fd], [], [], 0)[0]:
            chunk = os.read(fd, 65536).decode()
            if not chunk:
                break
            self.out += chunk

    def finished(self) -> bool:
        self.poll_output()
        if self.proc.poll() is None:
            return False
        self.poll_output()
        lines = [json.loads(x) for x in self.out.splitlines() if x.startswith("{")]
        self.result = lines[-1] if lines else {"sent": 0, "error": f"exited {self.proc.returncode} without a report"}
        self.sent = int(self.result.get("sent", 0))
        return True

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()


class SoakRig:
    """Receivers, proxies, the agent and the publishers of one soak run."""

    def __init__(self, base: str):
        self.receivers = {name: Receiver().start() for name in SINKS}
        self.proxies = {name: FaultProxy(rx.port).start() for name, rx in self.receivers.items()}
        self.generation = {name: 0 for name in SINKS}  # the RELOAD_HEADER value each sink is configured with
        self.agent = SoakAgent(self._sinks(), tuning=dict(TUNING), base=base)
        self.publishers: list[PublisherProcess] = []

    def _sinks(self) -> list[dict]:
        return [
            sink(name, self.proxies[name].url, headers={RELOAD_HEADER: str(self.generation[name])}, **table)
            for name, table in SINKS.items()
        ]

    def rewrite_config(self, changed: str) -> int:
        """Bump sink CHANGED's reload header in the config file (the next reload applies it); the new value."""
        self.generation[changed] += 1
        self.agent.sinks = self._sinks()
        self.agent.write_config()
        return self.generation[changed]

    def start_publisher(self, prefix: str, client: str, count: int, rate: float) -> PublisherProcess:
        args = [
            sys.executable,
            "-m",
            "tests.faults.loadgen",
            self.agent.publish_endpoint,
            prefix,
            str(count),
            "--rate",
            str(rate),
            "--client",
            client,
            "--mix",
            "--ready-timeout",
            "60",
            "--close-timeout",
            "120",
        ]
        proc = subprocess.Popen(
            args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True
        )
        pub = PublisherProcess(prefix, client, proc)
        self.publishers.append(pub)
        return pub

    def wait_publishers(self, timeout: float) -> None:
        """Until every publisher process has reported and exited (each flushes what it kept), or TIMEOUT."""
        try:
            wait_until(
                lambda: all(p.finished() for p in self.publishers),
                timeout,
                interval=0.2,
                what="every publisher to finish and flush",
            )
        except AssertionError:
            for p in self.publishers:
                if not p.finished():
                    p.kill()
                    p.finished()

    def heal(self, name: str) -> None:
        rx, px = self.receivers[name], self.proxies[name]
        rx.respond(200)
        rx.reject_events(None)
        px.mode = "pass"
        px.accept()

    def close(self) -> None:
        """Everything stopped, whatever state the run ended in: no process left behind."""
        for p in self.publishers:
            if p.proc.poll() is None:
                p.kill()
        self.agent.kill_group()
        for name in SINKS:
            self.proxies[name].stop()
            self.receivers[name].stop()

    def wait_agent_running(self, timeout: float = 60.0) -> None:
        self.agent.wait_running(len(SINKS), timeout=timeout)

    @staticmethod
    def now() -> tuple[float, float]:
        """(monotonic, wall) now: the receivers stamp requests with the first, events carry the second."""
        return time.monotonic(), time.time()
