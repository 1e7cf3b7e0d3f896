"""Fixtures of the fault suite: the e2e agent and receiver fixtures, publisher
processes, a fault proxy, and the report (one line per test, printed at the
end of the run so `make test` shows journaled / delivered / duplicate counts
and the worker RSS figures)."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time

import pytest

from tests.e2e.conftest import make_agent, make_receiver, pytest_runtest_makereport, receiver  # noqa: F401 - fixtures and hook re-exported for the fault tests
from tests.e2e.harness import REPO
from tests.faults.proxy import FaultProxy
from tests.helpers import stopped_after
from tests.parallel import SUMMARY_PREFIX

SUMMARY = SUMMARY_PREFIX + "fault suite: journaled / delivered / duplicates / worker RSS"


def pytest_configure(config):
    config.addinivalue_line("markers", "faults: fault injection with real processes (tests/faults)")


def pytest_collection_modifyitems(config, items):
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.faults)


@pytest.fixture
def report(request):
    """report(line): print LINE now (-s) and in the end-of-run summary (sent from an xdist worker
    to the controller with the test's report: tests/parallel.py)."""

    def add(line: str) -> None:
        request.node.user_properties.append((SUMMARY, line))
        print(line)

    return add


class LoadGen:
    """One publisher process (tests/faults/loadgen.py)."""

    def __init__(
        self,
        endpoint: str,
        prefix: str,
        count: int,
        rate: float = 0.0,
        mix: bool = False,
        client: str = "publisher",
        wait: bool = True,
    ):
        self.prefix = prefix
        self.count = count
        args = [
            sys.executable,
            "-m",
            "tests.faults.loadgen",
            endpoint,
            prefix,
            str(count),
            "--rate",
            str(rate),
            "--client",
            client,
        ]
        if mix:
            args.append("--mix")
        if not wait:
            args.append("--no-wait")
        self.proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self._early = ""  # stdout read by wait_published, before wait() reads the rest
        self.result: dict = {}

    def wait_published(self, timeout: float = 30.0) -> int:
        """Wait until the process has published everything (it may still be closing); how many."""
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while '"published"' not in self._early:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"loadgen {self.prefix} did not finish publishing within {timeout}s"
            readable, _, _ = select.select([fd], [], [], remaining)
            if readable:
                chunk = os.read(fd, 65536).decode()
                assert chunk, (
                    f"loadgen {self.prefix} exited early ({self.proc.wait()}): {self.proc.stderr.read()[-2000:]}"
                )
                self._early += chunk
        line = next(x for x in self._early.splitlines() if '"published"' in x)
        return int(json.loads(line)["published"])

    def wait(self, timeout: float = 60.0) -> int:
        """Wait for the process; the number of events it sent (its last line is kept in `result`)."""
        out, err = self.proc.communicate(timeout=timeout)
        lines = (self._early + out).strip().splitlines()
        assert self.proc.returncode == 0 and lines, (
            f"loadgen {self.prefix} failed ({self.proc.returncode}): {err[-2000:]}"
        )
        self.result = json.loads(lines[-1])
        return int(self.result["sent"])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def loadgen():
    with stopped_after(LoadGen) as start:
        yield start


@pytest.fixture
def proxy(receiver):  # noqa: F811 - the e2e `receiver` fixture imported above, requested by name
    p = FaultProxy(receiver.port).start()
    yield p
    p.stop()
