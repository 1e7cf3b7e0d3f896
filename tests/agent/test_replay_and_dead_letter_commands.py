"""The replay and dead-letter commands as units: each run on a supervisor with fake
processes and a real journal (SQLite in a temp dir), no control socket in between."""

from __future__ import annotations

import logging
import os

import pytest

from agent.client.errors import CommandError
from agent.server.actions.dead_letters import RedriveBody
from agent.server.actions.registry import BODY, CALLER_UID, DEAD_LETTERS, DISCARD, REDRIVE, REPLAY
from agent.server.actions.replay import ReplayBody
from bus.journal import Journal
from bus.journal_reader import JournalReader
from bus.shadow_marks import shadow_path
from common.timespec import iso_utc
from tests.agent.supervisor_fakes import Rig

T0, T1 = 1_700_000_000.0, 1_700_003_600.0


class JournalRig(Rig):
    """The supervisor with fake children but its real journal."""

    def _journal(self, path):
        return Journal(path)

    @property
    def journal(self):
        return self.sup.fleet.journal


@pytest.fixture
def rig():
    with JournalRig(sinks=(("cdr", "Oslo", 2), ("siem", "Oslo", 1))) as r:
        r.start()
        r.report_all()
        j = r.journal
        j.append([("conference_updated", b'{"n": %d}' % i) for i in range(100)], accepted_at=T0)
        j.append([("conference_updated", b'{"n": %d}' % i) for i in range(100, 200)], accepted_at=T1)
        j.set_cursor("cdr", 150)  # cdr has delivered 150 of them
        yield r


# ---------------------------------------------------------------- replay


def test_a_dry_run_counts_the_retained_events_since_time_and_changes_nothing(rig):
    answer = REPLAY.run(rig.sup, {"sink": "cdr", BODY: ReplayBody(since=T1, dry_run=True)})
    assert answer == {"events": 50, "since": iso_utc(T1), "oldest_retained": iso_utc(T0), "dry_run": True}
    assert (
        REPLAY.run(rig.sup, {"sink": "cdr", BODY: ReplayBody(since="2023-11-14T22:13:20Z", dry_run=True)})["events"]
        == 150
    )
    assert rig.link.to("cdr", "shutdown") == [] and rig.journal.cursors()["cdr"] == 150
    assert "would replay 50 events" in REPLAY.command.render(answer)


def test_a_replay_restarts_the_publisher_and_its_next_worker_starts_below_the_window(rig):
    shadow = shadow_path(os.path.join(rig.base, "state"), "cdr")
    with open(shadow, "wb") as fh:
        fh.write(b"stale acknowledgements above the old cursor")
    first = rig.launcher.current("cdr")
    answer = REPLAY.run(rig.sup, {"sink": "cdr", BODY: ReplayBody(since=T1)})
    assert answer["events"] == 50 and answer["dry_run"] is False
    assert rig.link.to("cdr", "shutdown") and rig.journal.cursors()["cdr"] == 150  # not while a worker runs
    assert rig.slot("cdr").last_attempted_restart is not None
    first.exit(0)
    rig.step()
    assert rig.launcher.current("cdr") is not first
    assert rig.journal.cursors()["cdr"] == 100  # just below offset 101, the first accepted at T1
    assert not os.path.exists(shadow)
    assert rig.journal.cursors()["siem"] != 100  # the other sink is left alone


def test_replay_refuses_a_bad_time_and_an_unknown_sink(rig):
    for since in ("yesterday", -1, "2h5"):
        with pytest.raises(CommandError) as err:
            REPLAY.run(rig.sup, {"sink": "cdr", BODY: ReplayBody(since=since)})
        assert err.value.status == 400 and "TIME" in err.value.message
    with pytest.raises(CommandError) as err:
        REPLAY.run(rig.sup, {"sink": "nope", BODY: ReplayBody(since=0)})
    assert err.value.status == 404


# ---------------------------------------------------------------- dead letters


def hold(rig, *offsets):
    reader = JournalReader(rig.journal.path, "cdr")
    try:
        for offset in offsets:
            reader.set_aside(
                offset,
                "conference_updated",
                b'{"seq": 9}',
                T0,
                f"epoch-{offset}",
                "conference_updated",
                3,
                400,
                "HTTP 400 Bad Request: unknown field",
            )
    finally:
        reader.close()


def test_dead_letters_lists_them_with_iso_times(rig):
    hold(rig, 7, 9)
    listed = DEAD_LETTERS.run(rig.sup, {"sink": "cdr"})
    assert [d["id"] for d in listed] == ["epoch-7", "epoch-9"]
    assert listed[0] == {
        "id": "epoch-7",
        "event": "conference_updated",
        "accepted_at": iso_utc(T0),
        "attempts": 3,
        "status": 400,
        "detail": "HTTP 400 Bad Request: unknown field",
        "redrive": False,
    }
    assert DEAD_LETTERS.run(rig.sup, {"sink": "siem"}) == [] and DEAD_LETTERS.command.render([]) == "no dead letters"
    assert "epoch-9" in DEAD_LETTERS.command.render(listed)


def test_redrive_marks_them_and_restarts_the_publisher(rig):
    hold(rig, 7, 9)
    with pytest.raises(CommandError) as err:
        REDRIVE.run(rig.sup, {"sink": "cdr", BODY: RedriveBody(ids=["epoch-7", "epoch-8"])})
    assert err.value.status == 404 and "epoch-8" in err.value.message
    assert not any(d["redrive"] for d in DEAD_LETTERS.run(rig.sup, {"sink": "cdr"}))  # nothing changed
    assert REDRIVE.run(rig.sup, {"sink": "cdr", BODY: RedriveBody(ids=["epoch-9"])}) == {"redriven": 1}
    assert [d["redrive"] for d in DEAD_LETTERS.run(rig.sup, {"sink": "cdr"})] == [False, True]
    assert rig.link.to("cdr", "shutdown")
    assert REDRIVE.run(rig.sup, {"sink": "siem", BODY: RedriveBody()}) == {"redriven": 0}
    assert rig.link.to("siem", "shutdown") == []  # nothing to redrive: no restart


def test_discard_deletes_one_and_logs_the_callers_uid(rig, caplog):
    hold(rig, 7)
    rig.sup.reports.refresh_dead_letters()
    assert rig.sup.fleet.sinks["cdr"].dead_letters == 1
    with pytest.raises(CommandError) as err:
        DISCARD.run(rig.sup, {"sink": "cdr", "id": "epoch-8", CALLER_UID: 1234})
    assert err.value.status == 404
    with caplog.at_level(logging.WARNING, logger="support.events"):
        assert DISCARD.run(rig.sup, {"sink": "cdr", "id": "epoch-7", CALLER_UID: 1234}) == {"discarded": "epoch-7"}
    assert "dead letter epoch-7 discarded for good by uid 1234" in caplog.text
    assert DEAD_LETTERS.run(rig.sup, {"sink": "cdr"}) == [] and rig.sup.fleet.sinks["cdr"].dead_letters == 0
    assert DISCARD.wants_caller and not DEAD_LETTERS.wants_caller
