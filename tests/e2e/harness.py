"""Whole-agent test harness: writes a config, runs `eventsink-agent run` as a real
process, talks to its control socket and metrics, and stops it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.request
from typing import Any

from agent.client.ctl import ControlClient
from tests.helpers import read_log, wait_until
from tools.demo import free_port, render_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def render_toml(node: dict, agent: dict, tuning: dict, sinks: list[dict]) -> str:
    tables = {name: t for name, t in (("node", node), ("agent", agent), ("tuning", tuning)) if t}
    return render_config(tables, sinks)


class Agent:
    """One agent process with its own temporary runtime/state dirs."""

    def __init__(
        self,
        sinks: list[dict],
        *,
        node: dict | None = None,
        tuning: dict | None = None,
        agent: dict | None = None,
        base: str | None = None,
    ):
        self.base = base or tempfile.mkdtemp(prefix="esa-", dir="/tmp")
        self.metrics_port = free_port()
        self.node = {"address": "10.44.99.2", "location": "Oslo", **(node or {})}
        self.agent = {
            "runtime_dir": os.path.join(self.base, "run"),
            "state_dir": os.path.join(self.base, "state"),
            "metrics_listen": f"127.0.0.1:{self.metrics_port}",
            **(agent or {}),
        }
        self.tuning = tuning or {}
        self.sinks = sinks
        self.config_path = os.path.join(self.base, "agent.toml")
        self.log_path = os.path.join(self.base, "agent.log")
        self.proc: subprocess.Popen | None = None
        self.write_config()

    # config -------------------------------------------------------------
    def write_config(self, text: str | None = None) -> None:
        with open(self.config_path, "w") as fh:
            fh.write(text if text is not None else render_toml(self.node, self.agent, self.tuning, self.sinks))

    @property
    def control_socket(self) -> str:
        return os.path.join(self.agent["runtime_dir"], "control.sock")

    @property
    def publish_endpoint(self) -> str:
        return f"ipc://{self.agent['runtime_dir']}/publish.sock"

    @property
    def journal_path(self) -> str:
        return os.path.join(self.agent["state_dir"], "journal.sqlite3")

    # process ------------------------------------------------------------
    NEW_SESSION = False  # start the agent in a process group of its own (a subclass may kill the group)
    START_TIMEOUT = 15.0  # s `start(wait=True)` waits for every sink to run

    def start(self, wait: bool = True, expect_sinks: int | None = None) -> Agent:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "run", "--config", self.config_path],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            start_new_session=self.NEW_SESSION,
        )
        log.close()
        if wait:
            self.wait_running(expect_sinks, timeout=self.START_TIMEOUT)
        return self

    def wait_running(self, expect_sinks: int | None = None, timeout: float = 15.0) -> dict:
        def ready():
            if self.proc and self.proc.poll() is not None:
                raise AssertionError(f"agent exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            st = self.status()
            sinks = st["sinks"]
            n = len(sinks) if expect_sinks is None else expect_sinks
            return st if len(sinks) == n and all(s["state"] == "running" for s in sinks) else None

        return wait_until(ready, timeout, what="all sinks running")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if not self.proc or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"agent did not exit within {timeout}s of signal {sig}") from exc

    def kill_all(self) -> None:
        """Last-resort cleanup: SIGKILL the agent and any of its children still around."""
        if self.proc and self.proc.poll() is None:
            try:
                for pid in self.child_pids():
                    os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
            self.proc.kill()
            self.proc.wait()

    def child_pids(self) -> list[int]:
        if not self.proc:
            return []
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
        return [int(x) for x in out.split()]

    def cleanup(self) -> None:
        self.kill_all()
        shutil.rmtree(self.base, ignore_errors=True)

    def log(self) -> str:
        return read_log(self.log_path)

    # control socket and metrics -------------------------------------------
    def client(self) -> ControlClient:
        return ControlClient(self.control_socket, timeout=10)

    def ctl(self, *args: str) -> subprocess.CompletedProcess:
        """`eventsinkctl --socket THIS_AGENT ARGS` as a real process (output as text)."""
        return subprocess.run(
            [sys.executable, "-m", "agent.client.ctl", "--socket", self.control_socket, *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=30,
        )

    def outward_texts(self, status: dict | None = None) -> dict[str, str]:
        """What this running agent shows outside (status, alarms, eventsinkctl, metrics, its processes'
        command lines), as text to search for secrets; STATUS when the caller already holds one."""
        return {
            "status": json.dumps(self.status() if status is None else status),
            "alarms": json.dumps(self.alarms()),
            "eventsinkctl": self.ctl("status", "--json").stdout,
            "metrics": self.metrics(),
            "cmdlines": "\n".join(cmdline(pid) for pid in [self.proc.pid, *self.child_pids()]),
        }

    def status(self) -> dict:
        return self.client().call("GET", "/v1/status")[1]

    def sink_status(self, name: str) -> dict:
        return next(s for s in self.status()["sinks"] if s["name"] == name)

    def alarms(self) -> list:
        return self.client().call("GET", "/v1/alarms")[1]

    def post(self, path: str) -> tuple[int, Any]:
        return self.client().call("POST", path)

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as resp:
            return resp.read().decode()

    def metric(self, name: str, **labels) -> float:
        """The value of one sample (0.0 when absent)."""
        from prometheus_client.parser import text_string_to_metric_families

        for fam in text_string_to_metric_families(self.metrics()):
            for s in fam.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    return s.value
        return 0.0

    def bus_rejected(self, reason: str) -> int:
        return int(self.status()["bus"]["rejected"].get(reason, 0))

    def bus_ready(self, publisher, timeout: float = 10.0) -> None:
        """Defeat PUB/SUB's slow joiner: send an invalid probe until the broker counts it."""
        before = self.bus_rejected("unknown_event")

        def seen():
            publisher.send_frames([b"probe", b'{"event":"probe","time":0,"data":{}}'])
            return self.bus_rejected("unknown_event") > before

        wait_until(seen, timeout, interval=0.1, what="the broker to see the publisher")

    def publisher(self):
        from bus.publisher import Publisher

        return Publisher(self.publish_endpoint)


def cmdline(pid: int) -> str:
    """PID's command line, "" when it is gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def sink(name: str, url: str, **extra) -> dict:
    return {"name": name, "url": url, "locations": ["Oslo"], **extra}


def publish(agent: Agent, events: list[tuple[str, dict]]) -> None:
    """Publish EVENTS, (name, data) pairs, on the agent's bus once the broker hears the publisher."""
    with agent.publisher() as pub:
        agent.bus_ready(pub)
        for name, data in events:
            pub.publish(name, data)


# One conference's events as a conference process publishes them (docs/events.md).
CONF = {"name": "Weekly sync", "service_type": "conference", "is_locked": False, "tag": ""}


def participant(uuid, **extra):
    return {
        "uuid": uuid,
        "conference": "Weekly sync",
        "display_name": f"Alice {uuid}",
        "protocol": "WebRTC",
        "role": "chair",
        "call_direction": "in",
        "has_media": True,
        "rx_bandwidth": 1024,
        **extra,
    }


def media(uuid):
    return {
        "uuid": uuid,
        "media_streams": [
            {
                "stream_id": "0",
                "stream_type": "audio",
                "node": "10.44.99.2",
                "rx_codec": "opus",
                "rx_bitrate": 64,
                "rx_packet_loss": 0.0,
            }
        ],
    }
