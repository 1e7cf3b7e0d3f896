"""Retention and the bound with a real broker subprocess (docs/delivery.md, "Retention and
replay"): delivered events stay for retention_hours, give way oldest first whenever room is
needed and never cause a journal_full rejection; the WAL keeps a small bound honest while
workers read."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from bus.journal_reader import JournalReader
from tests.bus.harness import BrokerRun, make_config
from tests.helpers import Sampler

pytestmark = pytest.mark.agent_process  # runs the broker as real processes (not in `make check`)

BLOB = "r" * 1000  # about 1 kB a row: a 0.5 MB bound holds a few hundred


def held_offsets(path: str) -> list[int]:
    with JournalReader(path, "probe") as r:
        return [row[0] for row in r.read(0, 10**6)]


def accepted_times(path: str) -> list[float]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return [row[0] for row in db.execute("SELECT accepted_at FROM events")]
    finally:
        db.close()


@pytest.fixture
def runs():
    started: list[BrokerRun] = []
    yield started.append
    for run in started:
        if run.proc.poll() is None:
            run.stop(signal.SIGKILL)


def test_a_bound_full_of_retained_rows_accepts_new_events_oldest_purged_first(root, runs):
    run = BrokerRun(root, make_config(root, max_journal_mb=0.5))  # retention: the default 24 h
    runs(run)
    bound = 512 * 1024
    sampler = Sampler(run.paths.journal_path)
    run.warm_up()
    start = run.wait_report(lambda r: r["received"] >= 1)
    sent = 0
    with JournalReader(run.paths.journal_path, "test") as sink:
        for _ in range(15):  # 1,500 rows of 1 kB: three times what the bound holds
            for _ in range(100):
                run.pub.publish("conference_updated", {"name": f"c{sent}", "tag": BLOB})
                sent += 1
            report = run.wait_report(lambda r: r["received"] >= start["received"] + sent or r["journal_full"])
            assert not report["journal_full"], report
            sink.commit_cursor(report["head"])  # the sink delivered everything: retained rows only
        head = run.wait_report(lambda r: r["received"] >= start["received"] + sent)["head"]
    held = held_offsets(run.paths.journal_path)
    report = run.wait_report(lambda r: r["head"] == head and r["retained"] == len(held_offsets(run.paths.journal_path)))
    assert report["rejected"] == {} and not report["journal_full"]  # retained rows never refused an event
    held = held_offsets(run.paths.journal_path)
    assert held == list(range(held[0], head + 1))  # a suffix: the oldest went first
    assert held[0] > 200 and len(held) >= 200  # many purged, many still kept for replay
    assert sampler.stop() <= bound
    assert run.stop() == 0


def test_retention_zero_keeps_nothing_once_delivered(root, runs):
    run = BrokerRun(root, make_config(root, retention_hours=0))
    runs(run)
    run.warm_up()
    for i in range(50):
        run.pub.publish("conference_updated", {"name": f"c{i}"})
    head = run.wait_report(lambda r: r["received"] >= 51)["head"]
    assert len(held_offsets(run.paths.journal_path)) == head  # kept while not delivered
    with JournalReader(run.paths.journal_path, "test") as sink:
        sink.commit_cursor(head)
    run.wait_report(lambda r: r["retained"] == 0 and not held_offsets(run.paths.journal_path))
    assert run.stop() == 0


def test_delivered_rows_are_kept_until_retention_has_passed(root, runs):
    hours = 0.0005  # 1.8 s
    run = BrokerRun(root, make_config(root, retention_hours=hours))
    runs(run)
    run.warm_up()
    for i in range(20):
        run.pub.publish("conference_updated", {"name": f"c{i}"})
    head = run.wait_report(lambda r: r["received"] >= 21)["head"]
    oldest = min(accepted_times(run.paths.journal_path))
    with JournalReader(run.paths.journal_path, "test") as sink:
        sink.commit_cursor(head)
    deadline = time.monotonic() + 30
    while held_offsets(run.paths.journal_path):
        assert time.monotonic() < deadline, "delivered rows never purged after retention_hours"
        run.wait_report(lambda r: True, timeout=6)  # lets time pass, keeps the link drained
    gone = time.time()
    # Causal, not timed: a purge that ignored retention would have emptied the journal at the
    # first round after the cursor moved, long before the rows were retention_hours old.
    assert gone >= oldest + hours * 3600
    run.wait_report(lambda r: r["retained"] == 0)
    assert run.stop() == 0


READER = """
import sys, time
from bus.journal_reader import JournalReader
reader = JournalReader(sys.argv[1], "reader")
while True:  # a worker catching up on a backlog: always reading
    reader.read(0, 1000)
"""


def test_a_small_bound_holds_its_size_while_workers_keep_reading(root, runs):
    """Before: each trickle transaction grew the WAL (readers kept SQLite from restarting it), so
    max_journal_mb = 1 refused events with a few hundred undelivered."""
    run = BrokerRun(root, make_config(root, max_journal_mb=1))  # sink "test" never delivers
    runs(run)
    run.warm_up()
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    readers = [subprocess.Popen([sys.executable, "-c", READER, run.paths.journal_path], cwd=repo) for _ in range(2)]
    sampler = Sampler(run.paths.journal_path)
    try:
        n = 600
        t0 = time.monotonic()
        for i in range(n):
            pause = t0 + i * 0.004 - time.monotonic()
            if pause > 0:
                time.sleep(pause)  # pacing the publisher (a trickle: one transaction each), not waiting
            run.pub.publish("conference_updated", {"name": f"c{i}"})
        report = run.wait_report(lambda r: r["received"] >= n + 1 or r["rejected"])
    finally:
        for p in readers:
            p.kill()
            p.wait()
    peak = sampler.stop()
    assert report["rejected"] == {} and not report["journal_full"], report
    assert report["received"] >= n + 1
    assert peak <= 1024 * 1024 // 2, f"journal peaked at {peak} bytes for ~{n} small undelivered events"
    assert run.stop() == 0


def test_an_event_larger_than_the_bound_can_hold_is_refused_alone(root, runs):
    """Allowed by max_message_kb, but more than a 1 MB journal can ever take (written twice: WAL and
    database). Before: the journal entered journal_full for good (its resume mark lay below an
    empty journal's size), rejecting every later event, after deleting every retained row."""
    run = BrokerRun(root, make_config(root, max_journal_mb=1, max_message_kb=1024))
    runs(run)
    run.warm_up()
    start = run.wait_report(lambda r: r["received"] >= 1)
    for i in range(20):
        run.pub.publish("conference_updated", {"name": f"c{i}", "tag": BLOB})
    head = run.wait_report(lambda r: r["received"] >= start["received"] + 20)["head"]
    with JournalReader(run.paths.journal_path, "test") as sink:
        sink.commit_cursor(head)  # delivered: retained rows
    run.pub.publish("conference_updated", {"name": "huge", "tag": "h" * 600_000})
    run.wait_report(lambda r: r["rejected"])
    for i in range(10):
        run.pub.publish("conference_updated", {"name": f"after{i}"})
    report = run.wait_report(lambda r: r["received"] >= start["received"] + 30 or r["journal_full"])
    assert report["rejected"] == {"journal_full": 1} and not report["journal_full"], report
    assert report["received"] == start["received"] + 30
    assert held_offsets(run.paths.journal_path)[0] == 1  # no retained row was deleted for it
    assert "more than the journal can ever hold" in run.stderr()
    assert run.stop() == 0


def test_full_for_an_event_nearly_as_large_as_the_bound_allows_is_left_once_delivered(root, runs):
    """The event fits an empty 1 MB journal but not beside undelivered rows: journal_full, until they
    are delivered. Before: the resume mark (95 % of the bound less the refused event's room) lay
    below an empty journal's size, so the state was never left."""
    run = BrokerRun(root, make_config(root, max_journal_mb=1, max_message_kb=1024))
    runs(run)
    run.warm_up()
    start = run.wait_report(lambda r: r["received"] >= 1)
    for i in range(40):
        run.pub.publish("conference_updated", {"name": f"c{i}", "tag": BLOB})
    head = run.wait_report(lambda r: r["received"] >= start["received"] + 40)["head"]
    big = {"name": "big", "tag": "b" * 435_000}
    run.pub.publish("conference_updated", big)
    assert run.wait_report(lambda r: r["journal_full"] and r["rejected"])["rejected"] == {"journal_full": 1}
    with JournalReader(run.paths.journal_path, "test") as sink:
        sink.commit_cursor(head)  # everything delivered: retained rows give way, the state ends
    run.wait_report(lambda r: not r["journal_full"])
    run.pub.publish("conference_updated", big)
    report = run.wait_report(lambda r: r["received"] >= start["received"] + 41 or r["journal_full"])
    assert report["received"] == start["received"] + 41 and not report["journal_full"], report
    assert report["rejected"] == {"journal_full": 1}
    assert run.stop() == 0
