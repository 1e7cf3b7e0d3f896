"""The broker sleeps when idle and amortises under load (README, Design): a real broker
subprocess, counted from the outside (context switches in /proc, reports on its
supervisor link, journal transactions in its report)."""

from __future__ import annotations

import glob
import signal
import time

import pytest

from bus.journal_reader import JournalReader
from common.internal import HEARTBEAT_INTERVAL, REPORT_INTERVAL
from tests.bus.harness import BrokerRun, make_config

pytestmark = pytest.mark.agent_process  # runs the broker as real processes (not in `make check`)


def context_switches(pid: int) -> int:
    """Times the process's threads were scheduled in so far (/proc/PID/task/*/schedstat, field 3)."""
    total = 0
    for path in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        with open(path) as fh:
            total += int(fh.read().split()[2])
    return total


@pytest.fixture
def run(root):
    # No cursor row and no retention: housekeeping may purge everything, so the journal ends up empty.
    broker = BrokerRun(root, make_config(root, retention_hours=0), cursor=False)
    yield broker
    if broker.proc.poll() is None:
        broker.stop(signal.SIGKILL)


def wait_journal_empty(run: BrokerRun, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    with JournalReader(run.paths.journal_path, "probe") as reader:
        while reader.read(0, 1):
            assert time.monotonic() < deadline, "housekeeping never purged the warm-up events"
            run.wait_report(lambda r: True, timeout=HEARTBEAT_INTERVAL + 2)  # lets time pass, keeps the link drained


def test_an_idle_broker_with_an_empty_journal_sleeps(run):
    """Before: 4 reports and one housekeeping round a second (about 13 wake-ups/s); now at most a heartbeat."""
    run.warm_up()
    wait_journal_empty(run)
    # The round that emptied the journal changed journal_bytes: its report is the last change.
    run.wait_report(lambda r: r["received"] >= 1 and r["head"] >= 1)
    before = context_switches(run.proc.pid)
    window = 2.0
    deadline = time.monotonic() + window
    reports = 0
    while (left := deadline - time.monotonic()) > 0:
        if run.router.poll(int(left * 1000) + 1):
            run.router.recv_multipart()
            reports += 1
    switches = context_switches(run.proc.pid) - before
    assert reports <= 2  # a trailing change report and/or one heartbeat, never REPORT_INTERVAL's 8
    assert switches <= 10, f"{switches} context switches in {window} s of idleness"
    assert run.stop() == 0


def test_the_heartbeat_arrives_when_nothing_changes(run):
    first = run.wait_report(lambda r: True)
    t0 = time.monotonic()
    second = run.wait_report(lambda r: True, timeout=HEARTBEAT_INTERVAL + 2)
    gap = time.monotonic() - t0
    assert second["pid"] == first["pid"] and second["received"] == first["received"]
    assert gap >= REPORT_INTERVAL  # nothing changed: not the change-driven cadence
    assert run.stop() == 0


def test_a_change_is_reported_within_the_report_interval_not_the_heartbeat(run):
    run.warm_up()
    start = run.wait_report(lambda r: r["received"] >= 1)
    run.pub.publish("conference_updated", {"name": "change"})
    report = run.wait_report(lambda r: r["received"] > start["received"], timeout=HEARTBEAT_INTERVAL / 2)
    assert report["head"] >= start["head"] + 1
    assert run.stop() == 0


def test_a_trickle_shares_transactions(run):
    """One event every millisecond: each used to be its own transaction (one wake-up each)."""
    run.warm_up()
    start = run.wait_report(lambda r: r["received"] >= 1)
    n = 200
    t0 = time.monotonic()
    for i in range(n):
        pause = t0 + i * 0.001 - time.monotonic()
        if pause > 0:
            time.sleep(pause)  # pacing the publisher, not waiting for the broker
        run.pub.publish("participant_updated", {"uuid": f"u{i}"})
    report = run.wait_report(lambda r: r["received"] >= start["received"] + n)
    transactions = report["transactions"] - start["transactions"]
    assert transactions < n * 0.75, f"{n} events in {transactions} transactions"
    assert run.stop() == 0


def test_an_idle_broker_holding_only_retained_rows_sleeps_until_they_expire(root):
    """Retained rows are not a reason to look again: only their expiry (24 h away here) is. A round
    scheduled for an expiry already past (or one per retained row) would wake it every 0.1 s."""
    run = BrokerRun(root, make_config(root))  # retention: the default 24 h
    try:
        run.warm_up()
        head = run.wait_report(lambda r: r["received"] >= 1)["head"]
        with JournalReader(run.paths.journal_path, "test") as sink:
            sink.commit_cursor(head)  # everything delivered: retained, none to purge for a day
        # the round after the commit measured them: from then on nothing changes
        run.wait_report(lambda r: r["retained"] == head, timeout=HEARTBEAT_INTERVAL + 2)
        run.wait_report(lambda r: True, timeout=HEARTBEAT_INTERVAL + 2)  # a trailing change report, if any
        before = context_switches(run.proc.pid)
        window = 2.0
        deadline = time.monotonic() + window
        while (left := deadline - time.monotonic()) > 0:
            if run.router.poll(int(left * 1000) + 1):
                run.router.recv_multipart()
        switches = context_switches(run.proc.pid) - before
        assert switches <= 10, f"{switches} context switches in {window} s with only retained rows"
        with JournalReader(run.paths.journal_path, "probe") as reader:
            assert len(reader.read(0, 100)) == head  # kept: not purged
        assert run.stop() == 0
    finally:
        if run.proc.poll() is None:
            run.stop(signal.SIGKILL)
