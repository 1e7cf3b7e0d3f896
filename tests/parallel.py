"""How the suite runs in parallel (pytest-xdist, `make test`): which tests share
one worker, which run with nothing else beside them, and the end-of-run summary
lines that workers send back to the controller.

- `xdist_group` (pytest-xdist's own marker, honoured with `--dist loadgroup`):
  the tests of one group run one after the other on the same worker, never
  two at once. GROUPS gives whole directories a group: tests/packaging (dpkg
  installs and purges the one package of the machine; its session fixtures
  build the .deb once per worker) and tests/faults (each publishes hundreds of
  events per second and asserts zero loss: two at once would saturate both
  cores of a CI machine).
- `alone`: the test runs with no other test of the session running (the other
  workers wait before their next test). For tests that measure the machine or
  load it whole. A reader/writer lock on a file of this run (flock): every
  test holds it shared, an `alone` test exclusively. A turnstile lock taken
  before either keeps a stream of shared holders from starving the exclusive one.
- summary lines: a test adds `(SUMMARY_PREFIX + section, line)` to its
  `user_properties`; they travel with the test's report to the controller,
  which prints them in the end-of-run summary under that section.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator

import pytest
from _pytest.nodeid import coerce_node_id  # pytest 9: the node id is structured

# Directory under tests/ -> the xdist_group of every test in it.
GROUPS = {"packaging": "packaging", "faults": "faults"}
SUMMARY_PREFIX = "summary: "
TESTS_DIR = os.path.dirname(os.path.abspath(__file__))


def directory_group(path: str) -> str | None:
    """The group of the tests under PATH (a test file), by their directory below tests/."""
    rel = os.path.relpath(path, TESTS_DIR)
    return GROUPS.get(rel.split(os.sep)[0])


def add_directory_groups(items: list[pytest.Item]) -> None:
    for item in items:
        group = directory_group(str(item.path))
        if group and not any(True for _ in item.iter_markers("xdist_group")):
            item.add_marker(pytest.mark.xdist_group(group))


def group_suffix(item: pytest.Item) -> str:
    """ "@NAME" for an item of xdist group(s) NAME (joined as pytest-xdist joins them), "" for others."""
    names = {str(m.args[0] if m.args else m.kwargs.get("name", "default")) for m in item.iter_markers("xdist_group")}
    return "@" + "_".join(sorted(names)) if names else ""


def tag_group_node_ids(items: list[pytest.Item]) -> None:
    """What pytest-xdist 3.8 does for --dist loadgroup (the group appended to the node id the
    controller schedules by), done where it fails: it sets `item._nodeid`, which pytest 9 no longer
    reads (the id lives in `item._id`), so every group was silently ignored."""
    for item in items:
        suffix = group_suffix(item)
        if suffix and not item.nodeid.endswith(suffix):
            item._id = coerce_node_id(item.nodeid + suffix)  # see the docstring
            assert item.nodeid.endswith(suffix), f"cannot tag {item.nodeid} with its xdist group"


def lock_paths(run_id: str) -> tuple[str, str]:
    """The turnstile and the reader/writer lock files of the test run RUN_ID."""
    base = os.path.join("/tmp", f"esa-xdist-{run_id}")
    return base + ".turnstile", base + ".lock"


@contextlib.contextmanager
def flocked(path: str, mode: int) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, mode)
        yield
    finally:
        os.close(fd)  # closing releases the lock


@contextlib.contextmanager
def running_slot(run_id: str | None, alone: bool) -> Iterator[None]:
    """Held while one test runs: shared, or exclusive when ALONE; nothing outside xdist (RUN_ID None)."""
    if run_id is None:
        yield
        return
    turnstile, lock = lock_paths(run_id)
    with contextlib.ExitStack() as held:
        with flocked(turnstile, fcntl.LOCK_EX):
            held.enter_context(flocked(lock, fcntl.LOCK_EX if alone else fcntl.LOCK_SH))
        yield


def remove_locks(run_id: str) -> None:
    for path in lock_paths(run_id):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


class SummaryCollector:
    """A plugin of the controller (or of a plain run): gathers the summary lines of the tests' teardown
    reports, in run order, and prints them, one section each, at the end of the run."""

    def __init__(self) -> None:
        self.sections: dict[str, list[str]] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "teardown":  # the last report of a test carries everything it added
            return
        for key, value in report.user_properties:
            if isinstance(key, str) and key.startswith(SUMMARY_PREFIX):
                self.sections.setdefault(key[len(SUMMARY_PREFIX) :], []).append(str(value))

    def pytest_terminal_summary(self, terminalreporter) -> None:
        for section, lines in self.sections.items():
            terminalreporter.section(section)
            for line in lines:
                terminalreporter.write_line(line)
