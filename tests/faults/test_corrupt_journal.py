"""A corrupt journal. The decision (README, "A corrupt journal"): at start the
supervisor checks every page; a journal that is garbled, truncated or not
SQLite at all is moved aside as `journal.sqlite3.corrupt-<UTC time>` (kept
for inspection), one loud line on `support.events` says so and how many
undelivered events it may have held, and the agent starts with a new journal
(a new epoch) and delivers again. A journal that turns corrupt under a running
agent makes the broker exit 3; the supervisor does not restart it (that would
be a crash loop) but stops the agent with exit code 3, and the next start
moves the file aside as above: one restart, never a loop."""

from __future__ import annotations

import glob
import os
import signal

import pytest

from tests.e2e.harness import sink
from tests.faults.oracle import Ledger, Tally, journal_epoch
from tests.helpers import wait_until

BEFORE = 300  # events journaled (and left undelivered) before the journal is damaged


def damage(path: str, how: str) -> None:
    size = os.path.getsize(path)
    with open(path, "r+b") as fh:
        if how == "garbled header":
            fh.write(os.urandom(100))
        elif how == "truncated":
            fh.truncate(size // 2)
        elif how == "garbled page":
            fh.seek(size // 2)
            fh.write(os.urandom(8192))
        else:
            raise ValueError(how)


def support_lines(agent) -> list[str]:
    return [line for line in agent.log().splitlines() if "support.events" in line]


def journal_with_backlog(make_agent, receiver, loadgen) -> tuple:
    """An agent that journaled BEFORE events its refused receiver never got, then stopped."""
    receiver.refuse()
    agent = make_agent([sink("cdr", receiver.url)], tuning={"max_retry_backoff": 3600})
    ledger = Ledger(agent.journal_path)
    ledger.add_published("c", loadgen(agent.publish_endpoint, "c", BEFORE).wait())
    wait_until(lambda: ledger.journaled() == BEFORE, 10, what="the events journaled")
    assert agent.stop() == 0
    return agent, journal_epoch(agent.journal_path)


@pytest.mark.parametrize("how", ["garbled header", "truncated", "garbled page"])
def test_a_corrupt_journal_at_start_is_quarantined_and_the_agent_starts_fresh(
    make_agent, receiver, loadgen, report, how
):
    agent, old_epoch = journal_with_backlog(make_agent, receiver, loadgen)
    damage(agent.journal_path, how)
    receiver.accept()
    agent.start()
    lines = support_lines(agent)
    loud = [line for line in lines if "moved it aside as" in line]
    assert len(loud) == 1 and " ERROR " in loud[0], lines
    moved = [m for m in glob.glob(agent.journal_path + ".corrupt-*") if not m.endswith(("-wal", "-shm"))]
    assert moved == [loud[0].split("moved it aside as ")[1].split(" ")[0]]
    assert "events it held that not every sink had are lost" in loud[0]
    assert journal_epoch(agent.journal_path) != old_epoch

    # the new journal works end to end
    ledger = Ledger(agent.journal_path)
    tally = Tally(receiver)
    ledger.add_published("n", loadgen(agent.publish_endpoint, "n", 100).wait())
    wait_until(lambda: ledger.journaled() == 100 and ledger.conserved(tally), 20, what="delivery on the new journal")
    v = ledger.verdict(
        f"corrupt journal at start ({how})",
        tally,
        received_counter=ledger.received_counter(agent),
        extra=f"quarantined: {os.path.basename(moved[0])}; {loud[0].rsplit('; ', 1)[1]}",
    )
    report(v.line())
    assert not v.problems, v.problems
    assert agent.status()["bus"]["broker_restarts"] == 0


def test_a_journal_corrupted_under_a_running_agent_stops_it_once_then_it_recovers(
    make_agent, receiver, loadgen, report
):
    agent = make_agent([sink("cdr", receiver.url)])
    broker = agent.status()["bus"]["broker_pid"]
    # Garbage in place of the journal file (the running processes keep the old inode; the
    # WAL would otherwise hide a damaged header from a new connection).
    garbage = agent.journal_path + ".garbage"
    with open(garbage, "wb") as fh:
        fh.write(os.urandom(64 * 1024))
    os.replace(garbage, agent.journal_path)
    for suffix in ("-wal", "-shm"):
        os.unlink(agent.journal_path + suffix)
    os.kill(broker, signal.SIGKILL)  # the new broker opens the damaged file
    assert agent.proc.wait(20) == 3
    lines = support_lines(agent)
    assert any("found the journal corrupt: stopping the agent" in line for line in lines), lines
    assert agent.log().count("broker: started") == 2  # the first, and one attempt after the kill: no loop

    agent.start()  # what systemd's Restart=on-failure does
    assert glob.glob(agent.journal_path + ".corrupt-*")
    ledger = Ledger(agent.journal_path)
    tally = Tally(receiver)
    ledger.add_published("m", loadgen(agent.publish_endpoint, "m", 100).wait())
    wait_until(lambda: ledger.journaled() == 100 and ledger.conserved(tally), 20, what="delivery after the restart")
    v = ledger.verdict(
        "journal corrupted while running: exit 3, restart", tally, received_counter=ledger.received_counter(agent)
    )
    report(v.line())
    assert not v.problems, v.problems
