"""A real broker subprocess for the bus tests: its config, and the sockets a supervisor
and a worker would have around it (a ROUTER it reports to, a SUB on its fan-out, a Publisher)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import orjson
import zmq

from bus.journal import Journal
from bus.publisher import Publisher
from common.config import encode_spec, parse
from common.config_types import Paths

MAX_KB = 4
WARMUP = "warmup"


def make_config(
    root: str, *, max_journal_mb: float = 64, retention_hours: float | None = None, max_message_kb: float = MAX_KB
):
    """RETENTION_HOURS None: the default (24 h)."""
    retention = "" if retention_hours is None else f"retention_hours = {retention_hours}"
    toml = f"""
[node]
address = "127.0.0.1"
location = "Oslo"
[agent]
runtime_dir = "{root}/run"
state_dir = "{root}/state"
max_message_kb = {max_message_kb}
max_journal_mb = {max_journal_mb}
{retention}
"""
    result = parse(toml)
    assert result.config is not None, result.problems
    return result.config


class BrokerRun:
    """A broker subprocess with the sockets a supervisor and a worker would have."""

    def __init__(self, root: str, config, *, cursor: bool = True, log_dir: str | None = None):
        self.root = root
        self.config = config
        self.paths = Paths.of(config)
        if cursor:  # as the supervisor does: a sink's cursor row keeps events from being purged
            with Journal(self.paths.journal_path) as j:
                j.ensure_cursor("test")
        os.makedirs(self.paths.runtime_dir, mode=0o750, exist_ok=True)
        self.ctx = zmq.Context()
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.ROUTER_HANDOVER, 1)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.bind(self.paths.supervisor_endpoint)
        self.stderr_path = os.path.join(log_dir or root, "broker.stderr")
        self.proc = start_broker(encode_spec(config), self.stderr_path)
        self.fanout = self.ctx.socket(zmq.SUB)
        self.fanout.setsockopt(zmq.RCVHWM, 0)
        self.fanout.setsockopt(zmq.LINGER, 0)
        self.fanout.setsockopt(zmq.SUBSCRIBE, b"")
        self.fanout.connect(self.paths.fanout_endpoint)
        self.pub = Publisher(self.paths.publish_endpoint)
        self.report: dict = {}

    def warm_up(self, timeout: float = 10.0) -> list[list[bytes]]:
        """Publish valid warm-up events until one comes out of the fan-out (both slow joiners done)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.pub.publish("conference_started", {"name": WARMUP})
            if self.fanout.poll(50):
                return [self.fanout.recv_multipart()]
        raise AssertionError("broker never forwarded a warm-up event")

    def wait_report(self, predicate, timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.router.poll(50):
                identity, frame = self.router.recv_multipart()
                assert identity == b"broker"
                self.report = orjson.loads(frame)
                if predicate(self.report):
                    return self.report
            assert self.proc.poll() is None, f"broker exited: {self.stderr()}"
        raise AssertionError(f"no matching report; last: {self.report}")

    def fanout_messages(self, predicate, timeout: float = 10.0) -> list[list[bytes]]:
        """Receive fan-out messages until PREDICATE(all received so far) holds."""
        got: list[list[bytes]] = []
        deadline = time.monotonic() + timeout
        while not predicate(got):
            assert time.monotonic() < deadline, f"fan-out: {len(got)} messages only"
            if self.fanout.poll(50):
                got.append(self.fanout.recv_multipart())
        return got

    def stderr(self) -> str:
        with open(self.stderr_path, encoding="utf-8", errors="replace") as fh:
            return fh.read()

    def stop(self, sig=signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(10)
        finally:
            self.pub.close()
            self.ctx.destroy(linger=0)


def start_broker(spec: bytes, stderr_path: str) -> subprocess.Popen:
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bus.broker"],
            stdin=subprocess.PIPE,
            stderr=err,
            cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
        )
    proc.stdin.write(spec)
    proc.stdin.close()
    return proc
