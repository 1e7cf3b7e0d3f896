"""The worker as a real process: journal, fan-out PUB and supervisor ROUTER bound by the test,
a real receiver. Envelopes, seq, the media-stream cache, filters, auth, signing, backoff,
Retry-After, backoff_exceeded, stop_publisher, restart redelivery, bulk, update, shutdown."""

import base64
import itertools
import json
import signal
import time

import msgspec
import pytest

from sinks import signing
from tests.sinks.harness import NODE, WorkerRun, make_sink
from tools.receiver import Receiver

pytestmark = pytest.mark.agent_process  # runs sink workers as real processes (not in `make check`)

BASE_RSS_KB = 40_000  # an idle worker: about 34 MB
SECRET = "whsec_" + base64.b64encode(b"worker-test-key-0123456789abcdef").decode()


@pytest.fixture
def rx():
    with Receiver() as r:
        yield r


@pytest.fixture
def run(request):
    runs = []

    def make(sinks, tuning=None, role="transcoding", start=True):
        w = WorkerRun.create(sinks, tuning, role)
        runs.append(w)
        if start:
            w.start()
        return w

    yield make
    for w in runs:
        if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
            print(f"--- worker log ---\n{w.log()[-4000:]}")
        w.close()


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    setattr(item, "rep_" + outcome.get_result().when, outcome.get_result())


def names(rx):
    return [e["event"] for e in rx.events]


def participant(uuid, **extra):
    return {"uuid": uuid, "conference": "Weekly", "display_name": f"Alice {uuid}", **extra}


def media(uuid):
    return {"uuid": uuid, "media_streams": [{"stream_id": "0", "stream_type": "audio", "rx_packet_loss": 0.0}]}


def test_catch_up_live_gaps_duplicates_and_passthrough(run, rx):
    w = run([make_sink(rx.url)], start=False)
    w.journal_only("conference_started", {"name": "before start"}, 1700000000.25)
    w.start()
    data = {"name": "Wëekly", "x_custom": {"nested": [1, 2.5, None]}, "is_locked": False}
    w.publish("conference_updated", data, 1700000001.5)
    w.journal_only("conference_updated", {"name": "only in the journal"})  # a dropped live message
    third = w.publish("conference_ended", {"name": "live after the gap"})
    w.pub.send_multipart([b"conference_ended", third.to_bytes(8, "big"), b"{}"])  # a duplicate offset
    assert rx.wait_events(5), names(rx)
    report = w.wait_report(lambda r: r["cursor"] == third and r["backlog"] == 0, what="cursor at head")
    assert report["delivered"] == 5 and report["head"] == third and report["in_flight"] == 0
    assert report["attempts"]["success"] == 5 and report["post_duration"]["count"] == 5
    assert report["event_age"]["count"] == 5 and report["publisher"] == "running"
    evs = rx.events
    assert names(rx) == [
        "eventsink_started",
        "conference_started",
        "conference_updated",
        "conference_updated",
        "conference_ended",
    ]
    assert [e["seq"] for e in evs] == [1, 2, 3, 4, 5]
    assert all(list(e) == ["node", "seq", "version", "time", "event", "data"] for e in evs)
    assert all(e["node"] == NODE and e["version"] == 2 for e in evs)
    assert evs[0]["data"] == {} and evs[1]["time"] == 1700000000.25 and evs[2]["time"] == 1700000001.5
    assert evs[2]["data"] == data and evs[3]["data"] == {"name": "only in the journal"}
    # the publisher's bytes, unchanged, inside the envelope
    assert (
        b'"data":{"name":"W\xc3\xabekly","x_custom":{"nested":[1,2.5,null]},"is_locked":false}}' in rx.requests[2].body
    )
    epoch = w.journal.epoch
    assert [r.headers["webhook-id"] for r in rx.requests[1:]] == [f"{epoch}-{o}" for o in range(1, 5)]
    assert not rx.problems
    assert w.journal.cursors()["cdr"] == third  # committed durably


@pytest.mark.parametrize("version", [1, 2])
def test_media_streams_pairing_whichever_comes_first(run, rx, version):
    w = run([make_sink(rx.url, version=version)], tuning={"media_streams_wait": 2.0, "cache_expiration": 3.0})
    w.publish("participant_connected", participant("a"))
    w.publish("participant_media_stream_window", {"uuid": "a", "call_quality_now": "3_bad"})
    w.publish("participant_disconnected", participant("a", disconnect_reason="Call disconnected"))
    w.publish("participant_media_streams_destroyed", media("a"))
    w.publish("participant_media_streams_destroyed", media("b"))
    w.publish("participant_disconnected", participant("b", disconnect_reason="Call disconnected"))
    w.publish("conference_ended", {"name": "Weekly"})
    expected = 8 if version == 2 else 5
    assert rx.wait_events(expected), names(rx)
    evs = rx.events
    assert [e["seq"] for e in evs] == list(range(1, expected + 1))
    if version == 2:
        assert names(rx) == [
            "eventsink_started",
            "participant_connected",
            "participant_media_stream_window",
            "participant_media_streams_destroyed",
            "participant_disconnected",
            "participant_media_streams_destroyed",
            "participant_disconnected",
            "conference_ended",
        ]
        for uuid in ("a", "b"):
            i = next(
                i for i, e in enumerate(evs) if e["event"] == "participant_disconnected" and e["data"]["uuid"] == uuid
            )
            assert evs[i - 1]["event"] == "participant_media_streams_destroyed" and evs[i - 1]["data"]["uuid"] == uuid
            assert "media_streams" not in evs[i]["data"]
    else:
        assert names(rx) == [
            "eventsink_started",
            "participant_connected",
            "participant_disconnected",
            "participant_disconnected",
            "conference_ended",
        ]
        for e, uuid in zip(evs[2:4], ("a", "b"), strict=True):
            assert e["data"] == participant(
                uuid, disconnect_reason="Call disconnected", media_streams=media(uuid)["media_streams"]
            )
    # nothing was held for the whole wait: the pairs were complete
    assert rx.requests[-1].t - rx.requests[0].t < 2.0
    w.wait_report(lambda r: r["cursor"] == r["head"] == 7, what="cursor past merged and paired offsets")


def test_disconnect_held_for_media_streams_wait_while_others_flow(run, rx):
    w = run([make_sink(rx.url)], tuning={"media_streams_wait": 0.8})
    assert rx.wait_events(1)
    t0 = time.monotonic()
    w.publish("participant_disconnected", participant("lonely"))
    w.publish("conference_updated", {"name": "not held behind it"})
    assert rx.wait_events(3)
    assert names(rx)[1:] == ["conference_updated", "participant_disconnected"]
    held = rx.requests[2].t - t0
    assert 0.7 <= held <= 3.0, held
    assert "media_streams" not in rx.events[2]["data"]
    w.wait_report(lambda r: r["cursor"] == 2, what="cursor after the held event")


def test_proxying_node_sends_only_lifecycle_and_moves_its_cursor(run, rx):
    w = run([make_sink(rx.url, version=1)], role="proxying")
    last = 0
    for i in range(5):
        last = w.publish(
            "conference_started" if i == 0 else "participant_connected",
            {"name": "c"} if i == 0 else participant(f"p{i}"),
        )
    w.wait_report(lambda r: r["cursor"] == last and r["backlog"] == 0, what="filtered offsets done")
    w.send({"type": "shutdown", "stop_event": True})
    assert w.wait_exit(10) == 0
    assert names(rx) == ["eventsink_started", "eventsink_stopped"]
    assert [e["seq"] for e in rx.events] == [1, 2]
    assert w.journal.cursors()["cdr"] == last


def test_events_filter_basic_auth_and_signing(run):
    with Receiver(username="cdr-user", password="S3cret-pass", secret=SECRET) as r:
        w = run(
            [
                make_sink(
                    r.url,
                    username="cdr-user",
                    password="S3cret-pass",
                    secret=SECRET,
                    events=["conference_started", "conference_ended"],
                )
            ]
        )
        w.publish("conference_started", {"name": "c"})
        w.publish("participant_connected", participant("p"))
        w.publish("conference_updated", {"name": "c"})
        w.publish("conference_ended", {"name": "c"})
        assert r.wait_events(3)
        w.wait_report(lambda rep: rep["cursor"] == 4, what="filtered offsets done")
        assert names(r) == ["eventsink_started", "conference_started", "conference_ended"]
        assert [e["seq"] for e in r.events] == [1, 2, 3]
        expected = "Basic " + base64.b64encode(b"cdr-user:S3cret-pass").decode()
        key = base64.b64decode(SECRET.removeprefix("whsec_"))
        for q in r.requests:
            assert q.headers["authorization"] == expected
            assert signing.verify(
                key, q.headers["webhook-id"], q.headers["webhook-timestamp"], q.body, q.headers["webhook-signature"]
            )
        assert not r.problems
        w.send({"type": "shutdown", "stop_event": False})
        assert w.wait_exit(10) == 0
        log = w.log()
        assert "S3cret-pass" not in log and SECRET not in log


def test_backoff_doubles_retries_the_oldest_and_resets(run, rx):
    rx.respond(503)
    w = run([make_sink(rx.url)], tuning={"initial_retry_backoff": 0.1, "max_retry_backoff": 60})
    w.publish("conference_updated", {"name": "waits behind started"})
    assert rx.wait_for(lambda r: len(r.requests) >= 4, timeout=10)
    t = [q.t for q in rx.requests[:4]]
    gaps = [b - a for a, b in itertools.pairwise(t)]
    for gap, want in zip(gaps, (0.1, 0.2, 0.4), strict=True):
        assert want * 0.9 <= gap <= want * 1.5 + 0.15, gaps
    assert len({q.headers["webhook-id"] for q in rx.requests[:4]}) == 1  # the oldest, eventsink_started
    report = w.wait_report(lambda r: r["current_backoff"] >= 0.4, what="backoff in the report")
    assert report["failures"] >= 3 and report["attempts"]["http_error"] >= 3 and report["next_backoff"] >= 0.8
    rx.respond(200)
    assert rx.wait_events(2, timeout=10)
    assert names(rx) == ["eventsink_started", "conference_updated"]
    w.wait_report(lambda r: r["current_backoff"] == 0 and r["delivered"] == 2, what="backoff reset")
    assert "support.events" in w.log() and "503" in w.log()


def test_retry_after_is_honoured(run, rx):
    rx.script(lambda i: (503, {"Retry-After": "1"}, 0.0) if i == 0 else (200, {}, 0.0))
    run([make_sink(rx.url)], tuning={"initial_retry_backoff": 0.05})
    assert rx.wait_events(1, timeout=10)
    assert rx.requests[1].t - rx.requests[0].t >= 0.95


def test_backoff_exceeded_reports_stops_sending_and_stop_publisher_keeps_counting(run, rx):
    rx.respond(500)
    w = run([make_sink(rx.url)], tuning={"initial_retry_backoff": 0.05, "max_retry_backoff": 0.2})
    w.wait_report(lambda r: r["publisher"] == "backoff_exceeded", what="backoff_exceeded")
    attempts = len(rx.requests)
    assert attempts == 4  # waits 0.05, 0.1, 0.2; the 4th failure would wait 0.4 > 0.2
    w.send({"type": "stop_publisher"})
    w.wait_report(lambda r: r["publisher"] == "paused", what="paused")
    w.send({"type": "stop_publisher"})  # the supervisor may repeat it
    w.send({"type": "no_such_command"})
    w.send({"type": "update", "config": {"not": "a config"}, "announce": True})
    last = 0
    for i in range(10):
        last = w.publish("conference_updated", {"name": f"c{i}"})
    w.journal_only("conference_updated", {"name": "dropped live"})
    w.wait_report(lambda r: r["head"] == last + 1 and r["backlog"] >= 11, what="backlog counted while paused")
    rx.respond(200)
    quiet_until = time.monotonic() + 0.5
    while time.monotonic() < quiet_until:  # the requirement itself: nothing is sent while stopped
        assert len(rx.requests) == attempts
        time.sleep(0.05)
    w.send({"type": "shutdown", "stop_event": True})  # a stopped publisher sends no stop event either
    assert w.wait_exit(10) == 0
    assert len(rx.requests) == attempts and w.journal.cursors()["cdr"] == 0
    log = w.log()
    assert log.count("publisher stopped") == 1
    assert "unknown supervisor message type" in log and "unusable config" in log


def test_restart_redelivers_from_the_journal_with_the_same_webhook_id(run, rx):
    rx.script(lambda i: (200, {}, 0.0) if i == 0 else (500, {}, 0.0))  # started ok, then failures
    w = run([make_sink(rx.url)], tuning={"initial_retry_backoff": 0.05, "max_retry_backoff": 60})
    first = w.publish("conference_updated", {"name": "c0"})
    w.publish("conference_updated", {"name": "c1"})
    assert rx.wait_for(lambda r: len(r.requests) >= 3, timeout=10)
    failed_ids = {q.headers["webhook-id"] for q in rx.requests[1:]}
    assert failed_ids == {f"{w.journal.epoch}-{first}"}
    w.proc.send_signal(signal.SIGTERM)
    assert w.wait_exit(10) == 0
    assert "eventsink_ended" not in [json.loads(q.body)["event"] for q in rx.requests]  # SIGTERM: no stop event
    rx.respond(200)
    w.start()
    assert rx.wait_for(lambda r: len(names(r)) == 4, timeout=10), names(rx)
    assert names(rx) == ["eventsink_started", "eventsink_started", "conference_updated", "conference_updated"]
    assert [e["seq"] for e in rx.events[1:]] == [1, 2, 3]
    ok = [q for q in rx.requests if q.status == 200][2:]
    assert ok[0].headers["webhook-id"] in failed_ids
    assert ok[1].headers["webhook-id"] == f"{w.journal.epoch}-{first + 1}"


def test_kill_9_then_restart_loses_nothing(run, rx):
    w = run([make_sink(rx.url)])
    n = 30
    for i in range(n):
        w.publish("conference_updated", {"name": f"c{i}"})
    assert rx.wait_for(lambda r: len(r.events) > 5, timeout=10)
    w.proc.kill()
    w.proc.wait()
    w.start()
    got = lambda: {e["data"]["name"] for e in rx.events if e["event"] == "conference_updated"}  # noqa: E731 - a named predicate read by two waits below
    assert rx.wait_for(lambda r: len(got()) == n, timeout=15), len(got())
    by_name: dict[str, set] = {}
    for q in rx.requests:
        doc = json.loads(q.body)
        if doc["event"] == "conference_updated":
            by_name.setdefault(doc["data"]["name"], set()).add(q.headers["webhook-id"])
    assert all(len(ids) == 1 for ids in by_name.values())


def test_bulk_envelopes_full_or_after_the_interval(run, rx):
    w = run([make_sink(rx.url, bulk=True, bulk_max_events=3, bulk_interval=0.4)], start=False)
    for i in range(4):
        w.journal_only("conference_updated", {"name": f"c{i}"})
    w.start()
    assert rx.wait_events(5, timeout=10)
    bodies = [json.loads(q.body) for q in rx.requests]
    assert [b["event"] for b in bodies] == ["eventsink_bulk"] * 3
    assert all(b["node"] == "127.0.0.1" and b["seq"] == 0 and b["version"] == 2 for b in bodies)
    # eventsink_started goes in an envelope of its own: it is never redelivered, journal events may be
    assert [[e["seq"] for e in b["data"]] for b in bodies] == [[1], [2, 3, 4], [5]]
    assert [e["event"] for e in bodies[0]["data"]] == ["eventsink_started"]
    assert all(e["node"] == NODE for b in bodies for e in b["data"])
    assert "-started-" in rx.requests[0].headers["webhook-id"] and rx.requests[0].headers["webhook-id"].endswith("+1")
    assert rx.requests[1].headers["webhook-id"] == f"{w.journal.epoch}-1+3"
    assert rx.requests[2].headers["webhook-id"] == f"{w.journal.epoch}-4+1"
    report = w.wait_report(lambda r: r["delivered"] == 5 and r["cursor"] == 4, what="bulk delivered")
    assert report["attempts"]["success"] == 3


def test_pipelined_sink_has_several_posts_in_flight(run, rx):
    delay = 0.5
    rx.respond(200, delay=delay)
    w = run([make_sink(rx.url, max_in_flight=4)])
    for i in range(8):
        w.publish("conference_updated", {"name": f"c{i}"})
    w.wait_report(lambda r: r["in_flight"] >= 2, what="POSTs in flight together")
    assert rx.wait_events(9, timeout=15)
    # one at a time, arrivals would be at least `delay` apart
    arrivals = sorted(q.t for q in rx.requests)
    assert any(b - a < delay * 0.9 for a, b in itertools.pairwise(arrivals)), arrivals
    # pipelined: order is not guaranteed, not even eventsink_started's
    assert sorted(e["data"].get("name", "") for e in rx.events) == [""] + [f"c{i}" for i in range(8)]
    assert sorted(e["seq"] for e in rx.events) == list(range(1, 10))
    assert max(r["in_flight"] for r in w.reports) <= 4


def test_update_moves_to_a_new_url_and_announces(run, rx):
    w = run([make_sink(rx.url, version=1)])
    assert rx.wait_events(1)
    with Receiver() as rx2:
        cfg = w.config
        new_sink = make_sink(rx2.url, version=1)
        new = msgspec.structs.replace(cfg, sink=[new_sink], node=msgspec.structs.replace(cfg.node, address="10.9.9.9"))
        w.send({"type": "update", "config": msgspec.to_builtins(new), "announce": True})
        assert rx2.wait_events(1)
        w.publish("conference_started", {"name": "after"})
        assert rx2.wait_events(2)
        assert names(rx2) == ["eventsink_updated", "conference_started"]
        assert [e["seq"] for e in rx2.events] == [2, 3] and all(e["node"] == "10.9.9.9" for e in rx2.events)
        w.send({"type": "shutdown", "stop_event": True})
        assert w.wait_exit(10) == 0
        assert names(rx2)[-1] == "eventsink_stopped" and rx2.events[-1]["seq"] == 4
    assert names(rx) == ["eventsink_started"]


def test_shutdown_with_a_hung_receiver_exits_within_the_grace(run, rx):
    from common.internal import CHILD_GRACE

    w = run([make_sink(rx.url)])
    assert rx.wait_events(1)
    rx.respond(200, delay=30)
    w.publish("conference_updated", {"name": "hangs"})
    assert rx.wait_for(lambda r: len(r.requests) >= 1, timeout=5)
    w.wait_report(lambda r: r["in_flight"] == 1, what="one POST hanging")
    t0 = time.monotonic()
    w.send({"type": "shutdown", "stop_event": True})
    assert w.wait_exit(CHILD_GRACE + 2) == 0
    assert time.monotonic() - t0 < CHILD_GRACE
    assert w.journal.cursors()["cdr"] == 0  # the hung event was not delivered: it stays


def test_a_stop_event_answered_with_an_unusable_retry_after_still_stops_cleanly(run, rx):
    """The stop event's one attempt is outside the sender threads: an answer that once raised
    (a latin-1 superscript digit in Retry-After) must not escape the shutdown."""
    w = run([make_sink(rx.url)])
    last = w.publish("conference_updated", {"name": "c0"})
    assert rx.wait_events(2)
    rx.respond(503, {"Retry-After": "\xb2"})
    w.send({"type": "shutdown", "stop_event": True})
    assert w.wait_exit(10) == 0, w.log()[-2000:]
    assert "Traceback" not in w.log()
    assert w.journal.cursors()["cdr"] == last
    assert rx.requests[-1].status == 503 and json.loads(rx.requests[-1].body)["event"] == "eventsink_ended"


def test_bounded_memory_with_a_large_backlog(run, rx):
    rx.refuse()
    w = run([make_sink(rx.url)], tuning={"initial_retry_backoff": 5}, start=False)
    filler = "x" * 4000
    w.journal.append(
        [
            (
                "conference_updated",
                json.dumps(
                    {"event": "conference_updated", "time": 1.0, "data": {"name": f"c{i}", "filler": filler}}
                ).encode(),
            )
            for i in range(12000)
        ]
    )
    w.start()
    report = w.wait_report(lambda r: r["backlog"] >= 12000, what="backlog counted")
    assert report["head"] == 12000 and report["cursor"] == 0
    # 12,000 events of 4 kB are 48 MB: a worker holding its backlog would grow far past this
    peak = 0
    for _ in range(40):  # sample while it reads as far as its window lets it
        with open(f"/proc/{w.proc.pid}/status") as fh:
            peak = max(peak, next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:")))
        time.sleep(0.025)
    assert peak < BASE_RSS_KB + 30_000, peak
    assert w.last_report()["backlog"] >= 12000 and rx.requests == []


def test_a_held_disconnect_waits_for_its_media_streams_beyond_a_full_window(run, rx):
    """While the window is full and the journal holds more, a held disconnect does not expire:
    its media streams may be the next unread event (here 300 events past the window)."""
    from sinks.worker import WINDOW

    rx.refuse()
    w = run(
        [make_sink(rx.url, bulk=True, bulk_max_events=2000, bulk_interval=0.05)],
        tuning={"media_streams_wait": 0.2, "cache_expiration": 0.2, "initial_retry_backoff": 1.0},
        start=False,
    )
    filler = [
        (
            "conference_updated",
            json.dumps({"event": "conference_updated", "time": 1.0, "data": {"name": f"c{i}"}}).encode(),
        )
        for i in range(WINDOW + 400)
    ]

    def row(event, data):
        return (event, json.dumps({"event": event, "time": 1.0, "data": data}).encode())

    rows = filler[: WINDOW - 100] + [row("participant_disconnected", participant("p"))] + filler[WINDOW - 100 :]
    rows.insert(WINDOW + 200, row("participant_media_streams_destroyed", media("p")))
    w.journal.append(rows)
    w.start()
    w.wait_report(lambda r: r["attempts"]["connection_error"] >= 1, what="a refused attempt")
    time.sleep(0.5)  # the requirement itself: longer than media_streams_wait passes while the window is full
    rx.accept()
    assert rx.wait_events(len(rows) + 1, timeout=20), len(rx.events)
    evs = rx.events
    i = next(i for i, e in enumerate(evs) if e["event"] == "participant_disconnected")
    assert evs[i - 1]["event"] == "participant_media_streams_destroyed" and evs[i - 1]["seq"] + 1 == evs[i]["seq"]
    assert [e["seq"] for e in evs] == list(range(1, len(rows) + 2))


def _cpu_seconds(pid: int) -> float:
    import os

    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_held_disconnect_past_its_wait_in_a_full_window_does_not_spin_the_loop(run, rx):
    """Window full, sink in backoff, a held disconnect past its wait whose partner may be unread:
    the loop must wait for something to change, not poll with a zero timeout (a core at 100 %
    for as long as the backoff lasts, up to max_retry_backoff)."""
    from sinks.worker import WINDOW

    rx.refuse()
    w = run([make_sink(rx.url)], tuning={"media_streams_wait": 0.1, "initial_retry_backoff": 30.0}, start=False)

    def row(event, data):
        return (event, json.dumps({"event": event, "time": 1.0, "data": data}).encode())

    rows = [row("conference_updated", {"name": f"c{i}"}) for i in range(WINDOW - 100)]
    rows += [row("participant_disconnected", participant("p"))]
    rows += [row("conference_updated", {"name": f"d{i}"}) for i in range(500)]
    w.journal.append(rows)
    w.start()
    w.wait_report(
        lambda r: r["attempts"]["connection_error"] >= 1 and r["backlog"] == len(rows),
        what="a refused attempt with the window full",
    )
    time.sleep(0.3)  # the held disconnect's wait (0.1 s) is over
    before, t0 = _cpu_seconds(w.proc.pid), time.monotonic()
    time.sleep(1.0)
    used = _cpu_seconds(w.proc.pid) - before
    elapsed = time.monotonic() - t0
    assert w.last_report()["failures"] == 1  # still in the first wait: the state measured was the stalled one
    assert used < 0.5 * elapsed, f"{used:.2f} s of CPU in {elapsed:.2f} s"


def test_turning_bulk_off_sends_what_the_batcher_held_and_then_single_events(run, rx):
    w = run([make_sink(rx.url, bulk=True, bulk_max_events=100, bulk_interval=30.0)])
    assert rx.wait_events(1)  # eventsink_started, alone
    for i in range(3):
        w.publish("conference_updated", {"name": f"c{i}"})
    w.wait_report(lambda r: r["backlog"] == 3, what="three events held for their envelope")
    cfg = w.config
    single = msgspec.structs.replace(cfg, sink=[make_sink(rx.url)])
    w.send({"type": "update", "config": msgspec.to_builtins(single), "announce": False})
    assert rx.wait_events(4, timeout=10)  # long before the 30 s interval
    w.publish("conference_updated", {"name": "after"})
    assert rx.wait_events(5)
    bodies = [json.loads(q.body) for q in rx.requests]
    assert [b["event"] for b in bodies] == ["eventsink_bulk", "eventsink_bulk", "conference_updated"]
    assert [e["data"]["name"] for e in bodies[1]["data"]] == ["c0", "c1", "c2"]
    assert rx.requests[1].headers["webhook-id"] == f"{w.journal.epoch}-1+3"
    assert bodies[2]["data"]["name"] == "after" and rx.requests[2].headers["webhook-id"] == f"{w.journal.epoch}-4"
    w.wait_report(lambda r: r["backlog"] == 0 and r["cursor"] == 4, what="all delivered")
