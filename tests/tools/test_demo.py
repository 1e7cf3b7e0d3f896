"""`eventsink-agent demo` as an operator runs it: a real process tree, live lines, Ctrl-C."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.agent_process,
]  # runs the demo: a real agent process tree (not in `make check`)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EVENT_LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} #(\d+) seq=(\d+) ([a-z_]+)")


class Demo:
    """The demo as a subprocess, its stdout read line by line in a thread."""

    def __init__(self, *extra: str):
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "demo", *extra],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.lines: list[str] = []
        self.queue: queue.Queue[str | None] = queue.Queue()
        self.err: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.err_reader = threading.Thread(target=lambda: self.err.extend(self.proc.stderr), daemon=True)
        self.err_reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.queue.put(line.rstrip("\n"))
        self.queue.put(None)

    def wait_line(self, pred, deadline: float) -> str | None:
        """The first new line satisfying pred before the monotonic deadline, or None."""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                line = self.queue.get(timeout=remaining)
            except queue.Empty:
                return None
            if line is None:
                return None
            self.lines.append(line)
            if pred(line):
                return line

    def finish(self, timeout: float) -> tuple[int, str, str]:
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            self.kill()
            raise AssertionError(f"demo did not exit within {timeout}s:\n" + "\n".join(self.lines[-40:])) from exc
        self.reader.join(5)
        self.err_reader.join(5)
        while True:
            try:
                line = self.queue.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.lines.append(line)
        return self.proc.returncode, "\n".join(self.lines), "".join(self.err)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def output(self) -> str:
        return "\n".join(self.lines)


def temp_dir_of(text: str) -> str | None:
    m = re.search(r"config\s+(/tmp/\S+)/agent\.toml", text)
    return m.group(1) if m else None


def agent_pid_of(text: str) -> int | None:
    m = re.search(r"agent running \(pid (\d+)\)", text)
    return int(m.group(1)) if m else None


def test_demo_shows_delivered_events_live_and_stops_cleanly_on_ctrl_c():
    demo = Demo()
    try:
        first = demo.wait_line(EVENT_LINE.match, demo.started + 10)
        assert first is not None, "no delivered event within 10 s of start:\n" + demo.output()
        bus_line = demo.wait_line(
            lambda line: bool(EVENT_LINE.match(line)) and " eventsink_" not in line, time.monotonic() + 20
        )
        assert bus_line is not None, "no simulated event delivered:\n" + demo.output()
        banner = demo.output()
        assert "eventsinkctl --socket" in banner and "/metrics" in banner and "http://127.0.0.1:" in banner
        base, pid = temp_dir_of(banner), agent_pid_of(banner)
        assert base and os.path.isdir(base)
        demo.proc.send_signal(signal.SIGINT)
        code, out, err = demo.finish(timeout=40)
    finally:
        demo.kill()
    assert code == 0, f"exit {code}\n{out}\n{err}"
    assert "Summary" in out and re.search(r"published\s+\d+ events", out)
    m = re.search(r"delivered\s+(\d+) of (\d+) to sink", out)
    assert m and int(m.group(1)) >= 1
    assert re.search(r"gaps 0, resets 0, duplicates 0", out), out
    assert "auth failures 0, bad signatures 0" in out
    assert "Traceback" not in err and "Traceback" not in out
    counts = [int(EVENT_LINE.match(line).group(1)) for line in out.splitlines() if EVENT_LINE.match(line)]
    assert counts == list(range(1, len(counts) + 1)), "running count not consecutive"
    assert not os.path.exists(base), "temp dir left behind"
    if pid is not None:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_demo_with_duration_stops_by_itself_and_the_summary_adds_up():
    demo = Demo("--duration", "3")
    try:
        code, out, err = demo.finish(timeout=60)
    finally:
        demo.kill()
    assert code == 0, f"exit {code}\n{out}\n{err}"
    m = re.search(r"delivered\s+(\d+) of (\d+) to sink 'demo'", out)
    assert m, out
    delivered, published = int(m.group(1)), int(m.group(2))
    assert published >= 1 and delivered == published, out
    lines = [EVENT_LINE.match(line) for line in out.splitlines() if EVENT_LINE.match(line)]
    names = [match.group(3) for match in lines]
    assert names[0] == "eventsink_started" and names[-1] == "eventsink_ended", names
    assert re.search(r"gaps 0, resets 0, duplicates 0", out), out
    assert "Traceback" not in err
