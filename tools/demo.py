"""`eventsink-agent demo`: the zero-setup tour.

Owns the demo: a temporary directory with a built-in config (node 127.0.0.1,
location "Demo", everything under the temp dir, metrics on a free port), two
local receivers (a version 2 sink with Basic auth and signatures whose
events are shown live, and a quiet version 1 bulk sink), the real agent
(`python -m agent run`) as a subprocess, and the conference simulator
publishing onto its bus. Ctrl-C or `--duration` stops it all and prints a
summary; the temp dir is removed.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

from tools.receiver import Receiver
from tools.simulator import ConferenceSimulator

NODE = "127.0.0.1"
LOCATION = "Demo"
RATE = 3.0  # simulated events per second
READY_TIMEOUT = 20.0  # s for the agent to answer with its sinks running
STOP_TIMEOUT = 15.0  # s for the agent to exit after SIGTERM (it should take well under 10)
DRAIN_TIMEOUT = (
    10.0  # s at most to let the last published events arrive before stopping (only reached when something is wrong)
)
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
V2_SINK, V1_SINK = "demo", "demo-v1-bulk"
V2_ONLY = ("participant_media_stream_window", "participant_media_streams_destroyed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):  # an inline table (a sink's headers)
        return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml(v)}" for k, v in value.items()) + "}"
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def render_config(tables: dict[str, dict], sinks: list[dict]) -> str:
    lines: list[str] = []
    for name, table in tables.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {_toml(v)}" for k, v in table.items()]
        lines.append("")
    for sink in sinks:
        lines.append("[[sink]]")
        lines += [f"{k} = {_toml(v)}" for k, v in sink.items()]
        lines.append("")
    return "\n".join(lines)


class Demo:
    """One demo run inside BASE (a temporary directory the caller removes)."""

    def __init__(self, base: str, duration: float | None, out=None):
        self.base = base
        self.duration = duration
        self.out = out or sys.stdout
        self.stop = threading.Event()
        self.config_path = os.path.join(base, "agent.toml")
        self.log_path = os.path.join(base, "agent.log")
        self.runtime_dir = os.path.join(base, "run")
        self.control_socket = os.path.join(self.runtime_dir, "control.sock")
        self.publish_endpoint = f"ipc://{self.runtime_dir}/publish.sock"
        self.metrics_port = free_port()
        self.username = "demo"
        self.password = secrets.token_urlsafe(12)
        self.secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
        self.rx = Receiver(NODE, 0, username=self.username, password=self.password, secret=self.secret, out=self.out)
        self.rx_bulk = Receiver(NODE, 0)
        self.proc: subprocess.Popen | None = None
        self.sim: ConferenceSimulator | None = None

    def say(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    # setup ------------------------------------------------------------------
    def write_config(self) -> None:
        tables = {
            "node": {"address": NODE, "location": LOCATION, "role": "transcoding"},
            "agent": {
                "runtime_dir": self.runtime_dir,
                "state_dir": os.path.join(self.base, "state"),
                "metrics_listen": f"127.0.0.1:{self.metrics_port}",
            },
        }
        sinks = [
            {
                "name": V2_SINK,
                "description": "shown live",
                "version": 2,
                "url": self.rx.url,
                "username": self.username,
                "password": self.password,
                "secret": self.secret,
                "locations": [LOCATION],
            },
            {
                "name": V1_SINK,
                "description": "version 1, bulk envelopes, counted quietly",
                "version": 1,
                "url": self.rx_bulk.url,
                "bulk": True,
                "bulk_interval": 1.0,
                "locations": [LOCATION],
            },
        ]
        fd = os.open(self.config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(render_config(tables, sinks))

    def start_agent(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = PACKAGE_ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        with open(self.log_path, "ab") as log:
            # Its own process group: a Ctrl-C in the terminal reaches the demo only, which then stops
            # the simulator first and the agent with SIGTERM.
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "agent", "run", "--config", self.config_path],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.base,
                env=env,
                process_group=0,
            )

    def agent_status(self) -> dict | None:
        from agent.client.ctl import ControlClient

        try:
            status, body = ControlClient(self.control_socket, timeout=2.0).call("GET", "/v1/status")
        except Exception:  # not up yet (no socket, refused, no answer)
            return None
        return body if status == 200 and isinstance(body, dict) else None

    def wait_ready(self) -> str | None:
        """None once the agent answers with every sink running, else why not."""
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline and not self.stop.is_set():
            if self.proc is not None and self.proc.poll() is not None:
                return f"the agent exited with status {self.proc.returncode}"
            st = self.agent_status()
            sinks = (st or {}).get("sinks") or []
            if len(sinks) == 2 and all(s.get("state") == "running" for s in sinks):
                return None
            self.stop.wait(0.1)
        return "interrupted" if self.stop.is_set() else f"the agent did not come up within {READY_TIMEOUT:g} s"

    def banner(self) -> None:
        self.say("eventsink-agent demo: a local agent, simulated conferences and a test receiver")
        self.say(f"  receiver     {self.rx.url}   (sink {V2_SINK!r}, version 2, Basic auth and signed: shown below)")
        self.say(f"  2nd receiver {self.rx_bulk.url}   (sink {V1_SINK!r}, version 1, bulk: counted quietly)")
        self.say(f"  bus          {self.publish_endpoint}   (simulator, {RATE:g} events/s)")
        self.say(f"  metrics      http://127.0.0.1:{self.metrics_port}/metrics")
        self.say(f"  control      {self.control_socket}")
        self.say(f"  try:         eventsinkctl --socket {self.control_socket} status")
        self.say(f"  config       {self.config_path}   (removed on exit)")
        self.say("Starting the agent; delivered events appear below, live (Ctrl-C to stop):")

    # the run ------------------------------------------------------------------
    def run(self) -> int:
        self.rx.start()
        self.rx_bulk.start()
        self.write_config()
        self.banner()
        self.start_agent()
        why = self.wait_ready()
        if why == "interrupted":
            return self.shutdown(0)
        if why is not None:
            self.say(f"demo: {why}; its log:")
            self.say(self.log_tail())
            self.shutdown(1, quiet=True)
            return 1
        self.say(f"-- agent running (pid {self.proc.pid}), simulated conferences starting")
        from bus.publisher import Publisher

        pub = Publisher(self.publish_endpoint)
        try:
            if not pub.wait_ready(5.0):
                self.say("demo: the agent's bus did not subscribe within 5 s; publishing anyway")
            self.sim = ConferenceSimulator(pub, rate=RATE, node=NODE, location=LOCATION)
            self.sim.run(duration=self.duration, stop_event=self.stop)
        finally:
            pub.close()
        self.drain()
        return self.shutdown(0)

    def drain(self) -> None:
        """Give the last published events a moment to arrive (bounded), so the summary adds up."""
        if not self.sim or not self.sim.count:
            return
        self.say("Stopping: letting the last events arrive ...")
        deadline = time.monotonic() + DRAIN_TIMEOUT
        v2_due = self.sim.count
        v1_due = v2_due - sum(self.sim.by_event.get(ev, 0) for ev in V2_ONLY)
        for rx, due in ((self.rx, v2_due), (self.rx_bulk, v1_due)):
            rx.wait_for(lambda r, due=due: _bus_events(r) >= due, timeout=max(0.0, deadline - time.monotonic()))

    def shutdown(self, code: int, quiet: bool = False) -> int:
        agent_code = self.stop_agent()
        self.rx.stop()
        self.rx_bulk.stop()
        if quiet:
            return code
        self.say(self.summary(agent_code))
        if agent_code not in (0, None):
            self.say(f"demo: the agent exited with status {agent_code}; its log:")
            self.say(self.log_tail())
            return 1
        return code

    def stop_agent(self) -> int | None:
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.say(f"demo: the agent did not stop within {STOP_TIMEOUT:g} s of SIGTERM; killing it")
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        return proc.returncode

    def summary(self, agent_code: int | None) -> str:
        published = self.sim.count if self.sim else 0
        by_published = dict(self.sim.by_event) if self.sim else {}
        s, b = self.rx.summary(), self.rx_bulk.summary()
        bus_delivered = sum(n for ev, n in s["by_event"].items() if not ev.startswith("eventsink_"))
        bulk_posts = sum(1 for r in self.rx_bulk.requests if 200 <= r.status < 300)
        v1_due = published - sum(by_published.get(ev, 0) for ev in V2_ONLY)
        v1_bus = sum(n for ev, n in b["by_event"].items() if not ev.startswith("eventsink_"))
        lines = [
            "",
            "Summary",
            f"  published     {published} events by the simulated conferences",
            f"  delivered     {bus_delivered} of {published} to sink {V2_SINK!r} "
            f"(+{s['events'] - bus_delivered} lifecycle events)",
            f"                {v1_bus} of {v1_due} to sink {V1_SINK!r} in {bulk_posts} bulk POSTs",
        ]
        for ev in sorted(set(by_published) | set(s["by_event"])):
            lines.append(
                f"    {ev:<38} published {by_published.get(ev, 0):>4}   delivered {s['by_event'].get(ev, 0):>4}"
            )
        checks = (
            f"  checks        gaps {s['gaps'] + b['gaps']}, resets {s['resets'] + b['resets']}, "
            f"duplicates {s['duplicates'] + b['duplicates']}, out of order {s['out_of_order'] + b['out_of_order']}, "
            f"auth failures {s['auth_failures']}, bad signatures {s['bad_signatures']}"
        )
        lines.append(checks)
        if agent_code is not None:
            lines.append(f"  agent         exited with status {agent_code}")
        return "\n".join(lines)

    def log_tail(self, limit: int = 6000) -> str:
        try:
            with open(self.log_path, errors="replace") as fh:
                text = fh.read()
        except OSError:
            return "(no log)"
        return text[-limit:] if text else "(empty log)"


def _bus_events(rx: Receiver) -> int:
    return sum(1 for e in rx.events if not str(e.get("event")).startswith("eventsink_"))


def main(args) -> int:
    """`eventsink-agent demo [--duration S]`."""
    duration = getattr(args, "duration", None)
    base = tempfile.mkdtemp(prefix="esa-demo-", dir="/tmp")
    demo = Demo(base, duration)

    def request_stop(signum, frame) -> None:
        demo.stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return demo.run()
    except OSError as exc:
        print(f"eventsink-agent demo: {exc.strerror or exc}", file=sys.stderr, flush=True)
        demo.shutdown(1, quiet=True)
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        demo.rx.stop()
        demo.rx_bulk.stop()
        if demo.proc is not None and demo.proc.poll() is None:
            demo.stop_agent()
        shutil.rmtree(base, ignore_errors=True)
