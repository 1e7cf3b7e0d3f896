"""The journal's bound (docs/delivery.md): at `max_journal_mb`, and on a real full
disk, the agent raises `Eventsink Journal Full`, rejects new events (counted,
reason `journal_full`), keeps and delivers everything it accepted, clears the
alarm once the receiver has drained the journal, and accepts events again.
With retention on (the default 24 h) the delivered rows stay for replay, yet
the alarm clears: retained rows give way. The journal (database + WAL) never
passes max_journal_mb on disk, sampled every few ms throughout."""

from __future__ import annotations

import os
import subprocess
import tempfile

import pytest

from tests.e2e.harness import sink
from tests.faults.oracle import Ledger, Tally, journal_rows
from tests.helpers import Sampler, wait_until

JOURNAL_FULL = "Eventsink Journal Full"
FLOOD = 20_000  # events offered while the receiver is slow: far more than the bound holds
AFTER = 500  # events offered once the alarm has cleared


@pytest.fixture
def small_fs():
    """A 2 MiB tmpfs for the journal (needs root and mount rights; skipped otherwise)."""
    d = tempfile.mkdtemp(prefix="esa-fs-", dir="/tmp")
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=2m,mode=0755", "tmpfs", d], check=True, capture_output=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError) as exc:
        os.rmdir(d)
        reason = f"cannot mount a tmpfs here (needs root): {exc}"
        print(f"SKIPPED real disk-full test: {reason}")
        pytest.skip(reason)
    yield d
    if subprocess.run(["umount", d], capture_output=True, timeout=10).returncode != 0:
        subprocess.run(["umount", "-l", d], capture_output=True, timeout=10)
    os.rmdir(d)


def alarm_metric(agent) -> float:
    return agent.metric("eventsink_alarm_active", alarm=JOURNAL_FULL, sink="")


def fill_then_drain(agent, receiver, loadgen, report, label: str, steady: bool) -> int:
    """STEADY: the journal stays full until the receiver drains it (the max_journal_mb bound);
    a full disk may have room again as soon as the WAL is checkpointed, and fill up again.
    Returns the peak size of the journal on disk."""
    sampler = Sampler(agent.journal_path)
    ledger = Ledger(agent.journal_path)
    tally = Tally(receiver)
    ledger.add_published("j", loadgen(agent.publish_endpoint, "j", FLOOD).wait(timeout=60))

    def all_counted():
        bus = agent.status()["bus"]
        return bus["received"] + bus["rejected"].get("journal_full", 0) == FLOOD and bus

    bus = wait_until(all_counted, 20, what="every offered event journaled or rejected as journal_full")
    assert bus["rejected"]["journal_full"] > 0
    assert bus["received"] == ledger.journaled()
    assert f"alarm raised: {JOURNAL_FULL}" in agent.log()
    if steady:
        assert bus["journal_full"]
        alarms = agent.alarms()
        assert [a["name"] for a in alarms] == [JOURNAL_FULL] and alarms[0]["sink"] in (None, "")
        assert alarm_metric(agent) == 1
    assert agent.metric("eventsink_bus_rejected_total", reason="journal_full") == bus["rejected"]["journal_full"]
    rejected = bus["rejected"]["journal_full"]

    receiver.respond(200)  # the receiver catches up: the journal drains and the alarm clears
    wait_until(
        lambda: not agent.alarms() and not agent.status()["bus"]["journal_full"],
        60,
        what="the journal-full alarm to clear",
    )
    assert alarm_metric(agent) == 0
    ledger.add_published("a", loadgen(agent.publish_endpoint, "a", AFTER).wait())
    wait_until(
        lambda: agent.status()["bus"]["received"] == bus["received"] + AFTER, 10, what="new events accepted again"
    )
    wait_until(lambda: ledger.conserved(tally), 60, what="everything journaled delivered")
    status = agent.status()
    peak = sampler.stop()
    v = ledger.verdict(
        label,
        tally,
        received_counter=ledger.received_counter(agent),
        extra=f"rejected_journal_full={rejected} journal_peak={peak}",
    )
    report(v.line())
    assert not v.problems, v.problems
    assert status["bus"]["rejected"]["journal_full"] == rejected  # none after the alarm cleared
    return peak


def test_max_journal_mb_raises_the_alarm_rejects_and_recovers(make_agent, receiver, loadgen, report):
    receiver.respond(200, delay=2.0)  # slow: the journal fills faster than it drains
    agent = make_agent(
        [sink("cdr", receiver.url, max_in_flight=1)],
        agent={"max_journal_mb": 1},  # retention_hours: the default, 24
        tuning={"max_background_posts": 1_000_000},
    )
    peak = fill_then_drain(agent, receiver, loadgen, report, "journal bound (max_journal_mb = 1)", steady=True)
    assert peak <= 1024 * 1024
    # everything is delivered and the delivered rows are still there for replay
    wait_until(
        lambda: agent.metric("eventsink_journal_retained_events") == journal_rows(agent.journal_path) > 0,
        10,
        what="the retained rows reported",
    )


@pytest.mark.root
def test_a_full_disk_raises_the_alarm_rejects_and_recovers(make_agent, receiver, loadgen, report, small_fs):
    receiver.respond(200, delay=2.0)
    agent = make_agent(
        [sink("cdr", receiver.url, max_in_flight=1)],
        agent={"max_journal_mb": 1024, "state_dir": os.path.join(small_fs, "state")},
        tuning={"max_background_posts": 1_000_000},
    )
    fill_then_drain(agent, receiver, loadgen, report, "disk full (2 MiB tmpfs)", steady=False)


@pytest.mark.root
def test_a_disk_filled_by_another_file_raises_the_alarm_and_recovers(make_agent, receiver, loadgen, report, small_fs):
    agent = make_agent([sink("cdr", receiver.url)], agent={"state_dir": os.path.join(small_fs, "state")})
    ledger = Ledger(agent.journal_path)
    tally = Tally(receiver)
    # The broker opens (creates) its journal after the sinks report running: filling the disk before
    # would test a broker that cannot start (seen on a busy machine), not a full disk under a running one.
    wait_until(lambda: agent.status()["bus"]["journal_bytes"] > 0, 15, what="the broker's journal open")
    filler = os.path.join(small_fs, "filler")
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)  # someone else fills the disk: no append of ours fails
    try:
        for _ in range(4096):
            try:
                os.write(fd, b"\0" * 4096)
            except OSError:
                break
    finally:
        os.close(fd)
    wait_until(lambda: [a["name"] for a in agent.alarms()] == [JOURNAL_FULL], 10, what="the journal-full alarm")
    ledger.add_published("x", loadgen(agent.publish_endpoint, "x", 100).wait())
    wait_until(lambda: agent.bus_rejected("journal_full") == 100, 10, what="events rejected while the disk is full")
    os.unlink(filler)
    wait_until(lambda: not agent.alarms(), 10, what="the alarm to clear once there is room")
    ledger.add_published("y", loadgen(agent.publish_endpoint, "y", 100).wait())
    wait_until(
        lambda: ledger.journaled() == 100 and ledger.conserved(tally), 20, what="delivery after the disk has room"
    )
    v = ledger.verdict(
        "disk filled by another file",
        tally,
        received_counter=ledger.received_counter(agent),
        extra=f"rejected_journal_full={agent.bus_rejected('journal_full')}",
    )
    report(v.line())
    assert not v.problems, v.problems
