"""The broker as a real subprocess: real ZeroMQ sockets in and out, a test-bound supervisor ROUTER, the real journal."""

from __future__ import annotations

import os
import signal
import stat
import time

import orjson
import pytest

from bus.journal_reader import JournalReader
from common.config import encode_spec
from common.config_types import Paths
from tests.bus.harness import WARMUP, BrokerRun, make_config, start_broker
from tests.bus.messages import REJECTS, VALID

pytestmark = pytest.mark.agent_process  # runs the broker as real processes (not in `make check`)


@pytest.fixture
def broker(root):
    run = BrokerRun(root, make_config(root))
    yield run
    if run.proc.poll() is None:
        run.stop(signal.SIGKILL)


def not_warmup(msg: list[bytes]) -> bool:
    return orjson.loads(msg[2])["data"].get("name") != WARMUP


def test_valid_forwarded_unchanged_malformed_counted_by_reason(broker):
    warm = broker.warm_up()
    sent_valid = []
    for event, data in VALID:
        payload = orjson.dumps({"event": event, "time": 1700000000.5, "data": data, "extra_top": 1})
        broker.pub.send_frames([event.encode(), payload])
        sent_valid.append((event, payload))
    expected_rejects: dict[str, int] = {}
    for reason, frames in REJECTS:
        if not frames:
            continue  # a zero-frame message cannot be sent
        broker.pub.send_frames(frames)
        expected_rejects[reason] = expected_rejects.get(reason, 0) + 1
    # a last valid message after all the malformed ones: the broker survived them in order
    tail = orjson.dumps({"event": "conference_ended", "time": 2.0, "data": {"name": "last"}})
    broker.pub.send_frames([b"conference_ended", tail])
    sent_valid.append(("conference_ended", tail))

    got = warm + broker.fanout_messages(lambda got: sum(map(not_warmup, got)) >= len(sent_valid))
    offsets = [int.from_bytes(m[1], "big") for m in got]
    assert all(len(m) == 3 and len(m[1]) == 8 for m in got)
    assert offsets == list(range(offsets[0], offsets[0] + len(offsets)))  # nothing dropped, ascending
    real = [m for m in got if not_warmup(m)]
    assert [(m[0].decode(), m[2]) for m in real] == sent_valid  # payload bytes unchanged

    report = broker.wait_report(lambda r: r["rejected"] == expected_rejects and r["head"] >= offsets[-1])
    assert report["received"] == report["head"] == offsets[-1]
    assert report["journal_full"] is False and report["journal_bytes"] > 0 and report["pid"] == broker.proc.pid
    with JournalReader(broker.paths.journal_path, "test") as reader:
        rows = reader.read(0, 10_000)
    early = [row for row in rows if row[0] < offsets[0]]  # warm-ups sent before the fan-out SUB had joined
    assert all(orjson.loads(p)["data"]["name"] == WARMUP for _, _, p in early)
    assert [(o, t.encode(), p) for o, t, p in rows[len(early) :]] == [
        (int.from_bytes(m[1], "big"), m[0], m[2]) for m in got
    ]

    assert broker.stop() == 0
    err = broker.stderr()
    for reason in expected_rejects:  # logged once per reason per minute, however many came
        assert sum(1 for line in err.splitlines() if f"rejected bus message: {reason}:" in line) == 1, reason
    assert "S3CRET" not in err and "Traceback" not in err


def test_publish_socket_is_group_accessible(broker):
    broker.wait_report(lambda r: True)
    path = broker.paths.publish_endpoint.removeprefix("ipc://")
    assert stat.S_ISSOCK(os.stat(path).st_mode)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
    assert stat.S_IMODE(os.stat(broker.paths.runtime_dir).st_mode) == 0o750


def test_burst_of_20000_is_fully_journaled(broker):
    broker.warm_up()
    n = 20_000
    for i in range(n):
        broker.pub.publish("participant_updated", {"uuid": f"u{i}", "rx_bandwidth": i})
    report = broker.wait_report(lambda r: r["received"] >= n, timeout=30)
    assert report["rejected"] == {}
    with JournalReader(broker.paths.journal_path, "test") as reader:
        rows = reader.read(0, 100_000)
    burst = [orjson.loads(p)["data"]["uuid"] for _, t, p in rows if t == "participant_updated"]
    assert burst == [f"u{i}" for i in range(n)]  # 0 lost, in order
    assert broker.stop() == 0


def test_sigterm_journals_and_exits_zero(broker):
    broker.warm_up()
    broker.pub.publish("conference_updated", {"name": "before-stop"})
    broker.fanout_messages(lambda got: any(m[0] == b"conference_updated" for m in got))
    assert broker.stop(signal.SIGTERM) == 0
    assert "broker stopped" in broker.stderr()
    with JournalReader(broker.paths.journal_path, "test") as reader:
        assert any(t == "conference_updated" for _, t, _ in reader.read(0, 100))


def test_supervisor_shutdown_message_stops_broker(broker):
    broker.wait_report(lambda r: True)
    broker.router.send_multipart([b"broker", orjson.dumps({"type": "shutdown", "stop_event": False})])
    assert broker.proc.wait(10) == 0
    broker.stop()


def test_events_are_purged_below_the_cursor_offsets_never_reused(root):
    run = BrokerRun(root, make_config(root, retention_hours=0))  # nothing kept once delivered
    try:
        run.warm_up()
        for i in range(10):
            run.pub.publish("conference_updated", {"name": f"c{i}"})
        report = run.wait_report(lambda r: r["received"] >= 11)
        head = report["head"]
        with JournalReader(run.paths.journal_path, "test") as reader:
            reader.commit_cursor(head)
            deadline = time.monotonic() + 10
            while reader.read(0, 10) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert reader.read(0, 10) == []  # housekeeping purged everything at or below the cursor
        assert run.stop() == 0
    finally:
        if run.proc.poll() is None:
            run.stop(signal.SIGKILL)
    run2 = BrokerRun(root, make_config(root), cursor=False)
    try:
        got = run2.warm_up()
        assert int.from_bytes(got[0][1], "big") > head
        assert run2.stop() == 0
    finally:
        if run2.proc.poll() is None:
            run2.stop(signal.SIGKILL)


def test_journal_full_rejects_then_recovers(root):
    run = BrokerRun(root, make_config(root, max_journal_mb=0.125))  # 128 KiB
    try:
        run.warm_up()
        blob = "x" * 3000
        report = {}
        for i in range(200):  # bounded: 600 KB is far beyond the bound
            run.pub.publish("conference_updated", {"name": f"c{i}", "tag": blob})
            if i % 50 == 49:
                report = run.wait_report(lambda r: True)
                if report["journal_full"]:
                    break
        report = run.wait_report(lambda r: r["journal_full"])
        accepted = report["received"]
        run.pub.publish("conference_updated", {"name": "while-full"})
        report = run.wait_report(lambda r: r["rejected"].get("journal_full", 0) >= 1)
        assert report["received"] == accepted  # nothing accepted while full...
        with JournalReader(run.paths.journal_path, "test") as reader:
            assert len(reader.read(0, 1000)) == report["head"]  # ...and nothing accepted was dropped
            reader.commit_cursor(report["head"])  # the sink delivered everything: room again
        report = run.wait_report(lambda r: not r["journal_full"])
        run.pub.publish("conference_updated", {"name": "after"})
        run.wait_report(lambda r: r["received"] == accepted + 1)
        assert run.stop() == 0
        err = run.stderr()
        assert sum(1 for line in err.splitlines() if "support.events" in line and "journal full" in line) == 1
        assert "has room again" in err
    finally:
        if run.proc.poll() is None:
            run.stop(signal.SIGKILL)


def test_bad_spec_exits_2_with_one_line(root):
    err_path = os.path.join(root, "err")
    proc = start_broker(b"{not a spec", err_path)
    assert proc.wait(10) == 2
    with open(err_path) as fh:
        err = fh.read()
    assert "spec" in err and "Traceback" not in err


def test_corrupt_journal_exits_3_with_one_line(root):
    config = make_config(root)
    paths = Paths.of(config)
    os.makedirs(paths.state_dir)
    with open(paths.journal_path, "wb") as fh:
        fh.write(b"this is not sqlite" * 500)
    err_path = os.path.join(root, "err")
    proc = start_broker(encode_spec(config), err_path)
    assert proc.wait(10) == 3
    with open(err_path) as fh:
        lines = [line for line in fh.read().splitlines() if line.strip()]
    assert len(lines) == 1 and "corrupt" in lines[0]


@pytest.mark.root
def test_disk_full_rejects_keeps_everything_and_recovers(tiny_fs, root):
    """The state_dir on a 1 MiB file system, the journal bound far above it: the disk fills first."""
    config = make_config(tiny_fs, max_journal_mb=1.5)  # reserve = bound / 8 = 192 KiB
    run = BrokerRun(tiny_fs, config, log_dir=root)
    try:
        run.warm_up()
        assert os.path.getsize(os.path.join(run.paths.state_dir, "journal.reserve")) == 192 * 1024
        blob = "y" * 3000
        report = run.wait_report(lambda r: True)
        for i in range(1000):  # bounded: 3 MB is far beyond the file system
            run.pub.publish("conference_updated", {"name": f"c{i}", "tag": blob})
            if i % 100 == 99:
                report = run.wait_report(lambda r: True)
                if report["journal_full"]:
                    break
        report = run.wait_report(lambda r: r["journal_full"] and r["rejected"].get("journal_full", 0) >= 1)
        head = report["head"]
        assert report["received"] == head
        assert not os.path.exists(os.path.join(run.paths.state_dir, "journal.reserve"))  # released for draining
        with JournalReader(run.paths.journal_path, "test") as reader:
            assert len(reader.read(0, 10_000)) == head  # nothing accepted was lost
            reader.commit_cursor(head)  # possible on the full disk thanks to the released reserve
        run.wait_report(lambda r: not r["journal_full"])
        run.pub.publish("conference_updated", {"name": "after"})
        report = run.wait_report(lambda r: r["received"] == head + 1)
        assert os.path.exists(os.path.join(run.paths.state_dir, "journal.reserve"))
        assert run.stop() == 0
        err = run.stderr()
        assert "disk is full" in err and "has room again" in err
    finally:
        if run.proc.poll() is None:
            run.stop(signal.SIGKILL)


def test_a_crash_while_checking_one_message_is_counted_not_fatal(root):
    from bus.broker import Broker

    class ExplodingValidator:
        def check(self, frames):
            raise RuntimeError("boom")

    b = Broker(make_config(root))
    try:
        b.validator = ExplodingValidator()
        b.process([[b"conference_started", b"{}"], [b"x"]])  # no journal needed: nothing is accepted
        assert b.rejects.counts == {"invalid_json": 2}
        assert b.received == 0
    finally:
        b.close()  # its loop's wake pipe
