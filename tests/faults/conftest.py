"""Fixtures of the fault suite: the e2e agent and receiver fixtures, publisher
processes, a fault proxy, and the report (one line per test, printed at the
end of the run so `make test` shows journaled / delivered / duplicate counts
and the worker RSS figures)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.e2e.conftest import make_agent, make_receiver, pytest_runtest_makereport, receiver  # noqa: F401
from tests.e2e.harness import REPO
from tests.faults.proxy import FaultProxy

REPORT: list[str] = []


def pytest_configure(config):
    config.addinivalue_line("markers", "faults: fault injection with real processes (tests/faults)")


def pytest_collection_modifyitems(config, items):
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.faults)


def pytest_terminal_summary(terminalreporter):
    if REPORT:
        terminalreporter.section("fault suite: journaled / delivered / duplicates / worker RSS")
        for line in REPORT:
            terminalreporter.write_line(line)


@pytest.fixture
def report():
    """report(line): print LINE now (-s) and in the end-of-run summary."""

    def add(line: str) -> None:
        REPORT.append(line)
        print(line)

    return add


class LoadGen:
    """One publisher process (tests/faults/loadgen.py)."""

    def __init__(self, endpoint: str, prefix: str, count: int, rate: float = 0.0, mix: bool = False):
        self.prefix = prefix
        self.count = count
        args = [sys.executable, "-m", "tests.faults.loadgen", endpoint, prefix, str(count), "--rate", str(rate)]
        if mix:
            args.append("--mix")
        self.proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def wait(self, timeout: float = 60.0) -> int:
        """Wait for the process; the number of events it sent."""
        out, err = self.proc.communicate(timeout=timeout)
        lines = out.strip().splitlines()
        assert self.proc.returncode == 0 and lines, f"loadgen {self.prefix} failed ({self.proc.returncode}): {err[-2000:]}"
        return int(json.loads(lines[-1])["sent"])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def loadgen():
    started: list[LoadGen] = []

    def start(endpoint: str, prefix: str, count: int, rate: float = 0.0, mix: bool = False) -> LoadGen:
        g = LoadGen(endpoint, prefix, count, rate, mix)
        started.append(g)
        return g

    yield start
    for g in started:
        g.stop()


@pytest.fixture
def proxy(receiver):
    p = FaultProxy(receiver.port).start()
    yield p
    p.stop()
