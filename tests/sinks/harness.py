"""A real worker process in a test: a journal, a test-bound fan-out PUB, a test-bound
supervisor ROUTER, `python -m sinks.worker` with its spec on stdin."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import orjson
import zmq

from bus.journal import Journal
from common import internal
from common.config import encode_spec
from common.config_types import AgentConfig, Config, NodeConfig, Paths, SinkConfig, TuningConfig
from tests.helpers import read_log

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NODE = "10.44.99.2"


class FakeClient:
    """An HttpClient stand-in for Dispatcher units: nothing goes on the wire; it records every
    attempt `pump` starts on it, in order, and results come back only when a test finishes them."""

    url = "http://127.0.0.1:1/events"
    key = ()

    def __init__(self):
        self.closed = False
        self.starts: list = []  # the Attempts started on this client, oldest first
        self.done: list = []  # (attempt, result) pairs `collect` takes, as libcurl's would be

    def start(self, body, webhook_id, attempt, now):
        self.starts.append(attempt)

    def started(self):
        pass  # libcurl would kick the new transfers here

    def close(self):
        self.closed = True

    def next_deadline(self):
        return None


def pumped(dispatcher, now: float) -> list:
    """The attempts one `pump(now)` started (on a FakeClient), in the order it started them."""
    client = dispatcher.clients.current
    before = len(client.starts)
    count = dispatcher.pump(now)
    started = client.starts[before:]
    assert count == len(started), (count, started)
    return started


def seqs(attempts: list) -> list[int]:
    return [attempt.post.seq for attempt in attempts]


def make_config(base: str, sinks: list[SinkConfig], tuning: dict | None = None, role: str = "transcoding") -> Config:
    return Config(
        node=NodeConfig(address=NODE, location="Oslo", role=role),
        agent=AgentConfig(
            runtime_dir=os.path.join(base, "run"),
            state_dir=os.path.join(base, "state"),
            publish_endpoint=f"ipc://{base}/run/publish.sock",
            control_socket=os.path.join(base, "run", "control.sock"),
        ),
        tuning=TuningConfig(**(tuning or {})),
        sink=sinks,
    )


def make_sink(url: str, name: str = "cdr", **extra) -> SinkConfig:
    return SinkConfig(name=name, url=url, locations=["Oslo"], **extra)


def payload(event: str, data: dict, time_: float | None = None) -> bytes:
    return orjson.dumps({"event": event, "time": time.time() if time_ is None else time_, "data": data})


class WorkerRun:
    """One worker process and the sockets and journal around it."""

    def __init__(self, config: Config, sink: str = "cdr", base: str | None = None):
        self.base = base
        self.config = config
        self.sink = sink
        self.paths = Paths.of(config)
        os.makedirs(self.paths.runtime_dir, exist_ok=True)
        self.journal = Journal(self.paths.journal_path)
        self.journal.ensure_cursor(sink)
        self.ctx = zmq.Context()
        self.pub = self.ctx.socket(zmq.PUB)
        self.pub.setsockopt(zmq.LINGER, 0)
        self.pub.setsockopt(zmq.SNDHWM, 100000)
        self.pub.bind(self.paths.fanout_endpoint)
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.setsockopt(zmq.ROUTER_HANDOVER, 1)
        self.router.bind(self.paths.supervisor_endpoint)
        self.reports: list[dict] = []
        self.proc: subprocess.Popen | None = None
        self.log_path = os.path.join(self.paths.runtime_dir, f"worker-{sink}.log")

    @classmethod
    def create(
        cls, sinks: list[SinkConfig], tuning: dict | None = None, role: str = "transcoding", sink: str | None = None
    ) -> WorkerRun:
        base = tempfile.mkdtemp(prefix="esa-", dir="/tmp")
        return cls(make_config(base, sinks, tuning, role), sink or sinks[0].name, base)

    # process ------------------------------------------------------------------
    def start(self, wait_report: bool = True) -> WorkerRun:
        self.reports = []
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sinks.worker"],
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        log.close()
        self.proc.stdin.write(encode_spec(self.config, self.sink))
        self.proc.stdin.close()
        if wait_report:
            self.wait_report(lambda r: True, what="first report")
        return self

    def wait_exit(self, timeout: float = 10.0) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def close(self) -> None:
        self.stop()
        self.pub.close(0)
        self.router.close(0)
        self.ctx.term()
        self.journal.close()
        if self.base:
            shutil.rmtree(self.base, ignore_errors=True)

    def log(self) -> str:
        return read_log(self.log_path)

    # bus ------------------------------------------------------------------------
    def journal_only(self, event: str, data: dict, time_: float | None = None) -> int:
        """Append one event to the journal without publishing it live (a dropped live message)."""
        body = payload(event, data, time_)
        return self.journal.append([(event, body)])[0]

    def publish(self, event: str, data: dict, time_: float | None = None) -> int:
        """Journal one event, then publish it on the fan-out, as the broker does."""
        body = payload(event, data, time_)
        offset = self.journal.append([(event, body)])[0]
        self.pub.send_multipart([event.encode(), offset.to_bytes(8, "big"), body])
        return offset

    # supervisor link -------------------------------------------------------------
    def send(self, msg: dict) -> None:
        self.router.send_multipart([internal.worker_identity(self.sink), internal.encode(msg)])

    def poll_reports(self, timeout: float = 0.0) -> None:
        if self.router.poll(int(timeout * 1000), zmq.POLLIN):
            while True:
                try:
                    _ident, frame = self.router.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                self.reports.append(orjson.loads(frame))

    def last_report(self) -> dict:
        self.poll_reports()
        return self.reports[-1] if self.reports else {}

    def wait_report(self, pred: Callable[[dict], Any], timeout: float = 10.0, what: str = "report") -> dict:
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None and seen == len(self.reports):
                self.poll_reports()
                if seen == len(self.reports):
                    raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            self.poll_reports(0.05)
            for r in self.reports[seen:]:
                if pred(r):
                    return r
            seen = len(self.reports)
        raise AssertionError(f"timed out waiting for {what}; last report {self.reports[-1:]}\n{self.log()[-3000:]}")
