"""The parallel run's plumbing (tests/parallel.py): directory groups, the `alone`
lock, the summary lines a worker sends to the controller; and a real
pytest-xdist run of a small suite showing an `alone` test overlaps no other."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap
import threading
import uuid

from tests import parallel
from tests.e2e.harness import REPO
from tests.helpers import wait_until


def test_whole_directories_get_their_group_and_others_none():
    tests = parallel.TESTS_DIR
    assert parallel.directory_group(os.path.join(tests, "packaging", "test_upgrade.py")) == "packaging"
    assert parallel.directory_group(os.path.join(tests, "faults", "sub", "test_x.py")) == "faults"
    assert parallel.directory_group(os.path.join(tests, "e2e", "test_delivery.py")) is None
    assert parallel.directory_group(os.path.join(tests, "test_parallel.py")) is None


class Holder(threading.Thread):
    """Holds a running slot (shared, or exclusive when ALONE) from the moment it gets it until released."""

    def __init__(self, run_id: str, alone: bool):
        super().__init__(daemon=True)
        self.run_id, self.alone = run_id, alone
        self.entered, self.release = threading.Event(), threading.Event()

    def run(self) -> None:
        with parallel.running_slot(self.run_id, self.alone):
            self.entered.set()
            self.release.wait(30)


def holders(run_id: str, *alone: bool) -> list[Holder]:
    started = []
    for a in alone:
        h = Holder(run_id, a)
        h.start()
        started.append(h)
    return started


def test_an_alone_slot_waits_for_the_running_tests_and_holds_new_ones_back():
    run_id = uuid.uuid4().hex
    try:
        first, second = holders(run_id, False, False)
        wait_until(lambda: first.entered.is_set() and second.entered.is_set(), what="two shared slots at once")
        [alone] = holders(run_id, True)
        assert not alone.entered.wait(0.3), "the alone test started beside running tests"
        [late] = holders(run_id, False)  # a test asking after the alone one: it waits its turn (no starving)
        first.release.set()
        assert not alone.entered.wait(0.3) and not late.entered.is_set()
        second.release.set()
        wait_until(alone.entered.is_set, what="the alone slot once the running tests ended")
        assert not late.entered.wait(0.3), "a test started beside the alone one"
        alone.release.set()
        wait_until(late.entered.is_set, what="the next shared slot after the alone one")
        late.release.set()
    finally:
        parallel.remove_locks(run_id)
    assert not any(os.path.exists(p) for p in parallel.lock_paths(run_id))


def test_without_a_run_id_no_lock_is_taken():
    with parallel.running_slot(None, alone=True), parallel.running_slot(None, alone=True):
        pass  # a plain run (no xdist): nested "alone" slots would deadlock if a lock were taken


class FakeReport:
    def __init__(self, when: str, props: list[tuple[str, str]]):
        self.when, self.user_properties = when, props


def test_the_collector_keeps_summary_lines_by_section_in_run_order_from_teardown_reports():
    c = parallel.SummaryCollector()
    a = (parallel.SUMMARY_PREFIX + "fault suite", "line 1")
    c.pytest_runtest_logreport(FakeReport("call", [a]))  # the same properties again at teardown
    c.pytest_runtest_logreport(FakeReport("teardown", [a, ("other", "not a summary")]))
    c.pytest_runtest_logreport(FakeReport("teardown", [(parallel.SUMMARY_PREFIX + "fault suite", "line 2")]))
    assert c.sections == {"fault suite": ["line 1", "line 2"]}


SUITE = """
import fcntl, os, time
import pytest

LOG = os.environ["ESA_PARALLEL_LOG"]


def note(what):
    with open(LOG, "a") as fh:
        fh.write(what + "\\n")


def hold(name, seconds=0.3):
    note("start " + name)
    time.sleep(seconds)  # the test "runs": long enough for another worker's test to overlap it
    note("end " + name)


@pytest.mark.parametrize("i", range(4))
def test_shared(i):
    hold(f"shared-{i}")


@pytest.mark.alone
def test_alone():
    hold("alone")


@pytest.mark.parametrize("i", range(4))
def test_more(i):
    hold(f"more-{i}")


@pytest.mark.xdist_group("g")
@pytest.mark.parametrize("i", range(3))
def test_grouped(i):
    with open(LOG + ".workers", "a") as fh:
        fh.write(os.environ["PYTEST_XDIST_WORKER"] + "\\n")
    hold(f"g-{i}", 0.2)
"""


def test_a_real_xdist_run_starts_no_test_beside_an_alone_one_and_runs_a_group_on_one_worker(tmp_path):
    (tmp_path / "conftest.py").write_text("from tests.conftest import *  # noqa: F401,F403\n")
    (tmp_path / "test_suite.py").write_text(textwrap.dedent(SUITE))
    log = tmp_path / "log"
    env = dict(os.environ, ESA_PARALLEL_LOG=str(log), PYTHONPATH=REPO)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-n",
            "2",
            "--dist",
            "loadgroup",
            "-p",
            "no:cacheprovider",
            str(tmp_path),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    seen = log.read_text().splitlines()  # "start NAME" / "end NAME", in the order they happened
    start, end = seen.index("start alone"), seen.index("end alone")
    assert end == start + 1, f"other tests ran beside the alone one: {seen[start : end + 1]}"
    running = [line for line in seen[:start] if line.startswith("start")]
    assert len(running) == len([line for line in seen[:start] if line.startswith("end")]), seen[:start]
    grouped = [line.split()[0] for line in seen if line.endswith(("g-0", "g-1", "g-2"))]
    assert grouped == ["start", "end"] * 3, f"tests of one group overlapped: {seen}"
    assert len(set((tmp_path / "log.workers").read_text().split())) == 1, "a group was split across workers"
    assert len(seen) == 24 and any(
        a.startswith("start") and b.startswith("start") for a, b in itertools.pairwise(seen)
    ), f"the run was not parallel at all, so it proves nothing: {seen}"
