"""The soak's oracle on made-up receivers (fakes: a list of requests): it passes a clean
delivery and names each kind of problem the soak must catch (loss, duplicates after dedup,
unexplained repeats, a restart re-sending more than in flight, order, the v1 merge)."""

from __future__ import annotations

import json
import time

from tests.faults.soak_faults import Fault
from tests.faults.soak_oracle import Journal, Published, agent_failures, judge_sink
from tools.receiver_server import ReceivedRequest

COUNT = 20  # events of client p1: loadgen's mix, so fids 8/9 and 18/19 are media pairs


def published() -> Published:
    p = Published()
    p.add("p1", "publisher", COUNT)
    return p


def journal(fids, times=None) -> Journal:
    j = Journal()
    for offset, fid in enumerate(fids, 1):
        j.offsets[fid].append(offset)
        j.times[fid] = (times or {}).get(fid, 1000.0 + offset)
        j.first_index["p1"] = min(j.first_index.get("p1", COUNT), int(fid.rpartition("-")[2]))
    return j


def envelope(fid: str, seq: int, name: str = "conference_updated", **data) -> dict:
    return {"node": "n", "seq": seq, "version": 2, "time": 1000.0, "event": name, "data": {"fid": fid, **data}}


def started() -> dict:
    return {"node": "n", "seq": 1, "version": 2, "time": 1000.0, "event": "eventsink_started", "data": {}}


class Fake:
    """A receiver's recorded requests, in arrival order one second apart."""

    def __init__(self):
        self.requests: list[ReceivedRequest] = []

    def post(self, wid: str, body: dict, header: str = "0") -> Fake:
        self.requests.append(
            ReceivedRequest(
                t=float(len(self.requests)),
                method="POST",
                path="/events",
                headers={"webhook-id": wid, "x-soak-reload": header},
                body=json.dumps(body).encode(),
                status=200,
            )
        )
        return self


def clean(receiver: Fake, fids=None, start_seq: int = 2) -> Fake:
    receiver.post("s1", started())
    for seq, fid in enumerate(fids or [f"p1-{i}" for i in range(COUNT)], start_seq):
        receiver.post(f"e-{fid}", envelope(fid, seq))
    return receiver


def judge(receiver, timeline=(), version=2, max_in_flight=1, j=None):
    fids = [f"p1-{i}" for i in range(COUNT)]
    return judge_sink("s", version, max_in_flight, receiver, published(), j or journal(fids), list(timeline), 0)


def test_a_clean_delivery_passes():
    v = judge(clean(Fake()))
    assert v.problems == [] and v.distinct == COUNT and v.dup_before == 0 and v.dup_after == 0


def test_a_missing_event_is_named_with_where_it_was_lost():
    fids = [f"p1-{i}" for i in range(COUNT) if i != 5]
    v = judge(clean(Fake(), fids), j=journal(fids))
    assert v.missing_publisher == 1
    assert any("never journaled" in p and "p1-5" in p for p in v.problems), v.problems


def test_an_event_under_two_webhook_ids_is_a_duplicate_after_dedup():
    v = judge(clean(Fake()).post("other-id", envelope("p1-3", 40)))
    assert v.dup_after == 1 and any("delivered twice after dedup" in p for p in v.problems), v.problems


def test_a_repeat_without_a_fault_is_unexplained_and_one_after_a_kill_is_not():
    repeat = clean(Fake()).post("e-p1-19", envelope("p1-19", 21))
    assert any("no fault in between" in p for p in judge(repeat).problems)
    kill = Fault("kill_worker", "s", start=20.5, wall=1.0)
    assert judge(repeat, [kill]).problems == []


def test_a_restart_re_sending_more_than_max_in_flight_is_a_problem():
    receiver = clean(Fake())
    kill = Fault("kill_worker", "s", start=float(len(receiver.requests)), wall=1.0)
    for fid in ("p1-17", "p1-18"):
        receiver.post(f"e-{fid}", envelope(fid, 30))
    v = judge(receiver, [kill])
    assert any("more than max_in_flight = 1" in p for p in v.problems), v.problems
    assert judge(receiver, [kill], max_in_flight=2).problems == []


def test_going_back_within_one_publisher_start_is_out_of_order():
    fids = [f"p1-{i}" for i in range(COUNT)]
    fids[3], fids[4] = fids[4], fids[3]
    v = judge(clean(Fake(), fids))
    assert any("out of order" in p and "p1-3 after p1-4" in p for p in v.problems), v.problems


def v1_without_p1_18s_media() -> Fake:
    """A version 1 sink's receiver: every event of p1 but the media messages, each disconnect with its
    own media streams merged, except p1-18's (sent alone)."""
    receiver = Fake().post("s1", started())
    pub = published()
    for seq, (fid, name) in enumerate(
        ((f, n) for f, n in pub.name.items() if n != "participant_media_streams_destroyed"), 2
    ):
        uuid = "p1-u0" if fid in ("p1-8", "p1-9") else "p1-u1"
        streams = [{"stream_id": pub.media_of[uuid]}] if fid != "p1-18" else []
        extra = {"uuid": uuid, "media_streams": streams} if name == "participant_disconnected" else {}
        receiver.post(f"e-{fid}", envelope(fid, seq, name, **extra))
    return receiver


def test_version_1_needs_its_own_media_streams_merged():
    receiver = v1_without_p1_18s_media()
    v = judge(receiver, version=1)
    assert v.problems and all("without their journaled media streams" in p for p in v.problems), v.problems
    assert "p1-18" in v.problems[0]
    receiver.requests = [r for r in receiver.requests if b"p1-18" not in r.body]
    assert [p for p in judge(receiver, version=1).problems if "media" in p] == []


def test_version_1_may_send_a_disconnect_alone_when_its_media_was_journaled_after_the_wait():
    """The media-stream cache holds a disconnect media_streams_wait seconds: a media message journaled
    later (resent after a broker kill -9) may miss it; one journaled within the wait may not."""
    receiver = v1_without_p1_18s_media()
    for late, fails in ((0.5, True), (1.2, False)):
        j = journal([f"p1-{i}" for i in range(COUNT)])
        j.accepted = {fid: 1000.0 for fid in j.offsets}
        j.accepted["p1-19"] = 1000.0 + late  # p1-18's media message
        v = judge(receiver, version=1, j=j)
        assert any("without their journaled media streams" in p for p in v.problems) == fails, (late, v.problems)


def test_a_bare_pub_loss_while_the_broker_was_down_is_noted_not_failed():
    fids = [f"p1-{i}" for i in range(COUNT) if i != 12]
    pub = Published()
    pub.add("p1", "pub", COUNT)
    times = {f"p1-{i}": 2000.0 + i for i in range(COUNT)}
    down = Fault("kill_broker", None, start=0.0, wall=2011.5, wall_end=2012.5)
    receiver = clean(Fake(), fids)
    v = judge_sink("s", 2, 1, receiver, pub, journal(fids, times), [down], 0)
    assert v.problems == [] and v.bare_lost_allowed == 1
    v = judge_sink("s", 2, 1, receiver, pub, journal(fids, times), [], 0)
    assert v.bare_lost_other == 1 and v.problems


def test_the_last_post_must_carry_the_last_reload():
    receiver = clean(Fake())
    v = judge_sink("s", 2, 1, receiver, published(), journal([f"p1-{i}" for i in range(COUNT)]), [], 3)
    assert any("reload did not take effect" in p for p in v.problems)


def test_a_replay_explains_repeats_of_what_the_old_worker_sent_after_it_was_asked():
    receiver = clean(Fake())
    replay = Fault("replay", "s", start=15.5, wall=1.0, end=19.5)  # p1-15..p1-19 came after the ask
    for seq, i in enumerate(range(15, COUNT), 2):
        receiver.post(f"e-p1-{i}", envelope(f"p1-{i}", seq))
    assert judge(receiver, [replay]).problems == []
    late = Fault("replay", "s", start=15.5, wall=1.0, end=16.0)  # over long before p1-19's first copy
    assert any("no fault in between" in p for p in judge(receiver, [late]).problems)


def test_agent_reported_timeouts_explain_a_repeat_of_what_arrived_then():
    log = (
        "2026-12-08 01:00:10,500 WARNING support.events [sink:s]: sink s: POST to http://x/ failed: timeout: "
        "no answer\n2026-12-08 01:00:12,000 INFO support.events [sink:s]: sink s: POST to http://x/ succeeded "
        "after 1 failed attempts\n"
    )
    base = time.mktime(time.strptime("2026-12-08 01:00:00", "%Y-%m-%d %H:%M:%S"))
    windows = agent_failures(log, base)  # wall - mono: monotonic 0 = 01:00:00
    assert windows["s"] == [(10.5 - 1 - 1.5, 12.0 + 1.5)]  # a little past the success (FAILURE_TAIL)
    repeat = clean(Fake()).post("e-p1-8", envelope("p1-8", 30))  # first copy at t=9
    assert (
        judge_sink(
            "s", 2, 1, repeat, published(), journal([f"p1-{i}" for i in range(COUNT)]), [], 0, windows["s"]
        ).problems
        == []
    )
