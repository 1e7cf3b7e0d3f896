"""A repeated (publisher id, sequence) is dropped and counted, never journaled twice, also
across a restart of the whole agent: a bare ZeroMQ client sends hand-made three-frame
messages (docs/bus.md), so the proof does not depend on the Publisher class."""

from __future__ import annotations

import signal

import orjson
import zmq

from tests.e2e.harness import sink
from tests.faults.oracle import journal_head
from tests.helpers import wait_until

PID = b"\x07" * 8


def frames(seq: int) -> list[bytes]:
    payload = {"event": "conference_updated", "time": 1.0, "data": {"name": f"n{seq}"}}
    return [b"conference_updated", orjson.dumps(payload), PID + seq.to_bytes(8, "big")]


def metric(agent, name: str) -> float:
    for line in agent.metrics().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no {name} in /metrics")


class HandMade:
    """A bare PUB that sends numbered messages until the broker has journaled up to a head."""

    def __init__(self, endpoint: str):
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.PUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)

    def join(self, agent, probe_seq: int) -> None:
        """Send PROBE_SEQ until it is journaled (a PUB drops what it sends before it is subscribed)."""
        head = journal_head(agent.journal_path)
        wait_until(
            lambda: (self.sock.send_multipart(frames(probe_seq)), journal_head(agent.journal_path) > head)[1],
            10,
            interval=0.05,
            what="the probe journaled",
        )

    def close(self) -> None:
        self.sock.close()
        self.ctx.term()


def test_a_repeated_number_is_dropped_and_counted_also_across_an_agent_restart(make_agent, report):
    agent = make_agent([sink("cdr", "http://127.0.0.1:9/")], tuning={"max_retry_backoff": 3600})
    pub = HandMade(agent.publish_endpoint)
    try:
        pub.join(agent, 1)  # seq 1 journaled once; the probe's own repeats are dropped
        head, dups = journal_head(agent.journal_path), metric(agent, "eventsink_bus_duplicates_total")
        for seq in (2, 3, 2, 3, 1):
            pub.sock.send_multipart(frames(seq))
        wait_until(
            lambda: (
                journal_head(agent.journal_path) == head + 2
                and metric(agent, "eventsink_bus_duplicates_total") >= dups + 3
            ),
            10,
            what="2 and 3 journaled, the repeats counted",
        )
        rejected = metric(agent, 'eventsink_bus_rejected_total{reason="frame_count"}')
        assert rejected == 0  # a repeat is never a rejection
        pub.sock.send_multipart(frames(4)[:2] + [b"short"])  # a third frame that is not 16 bytes
        wait_until(
            lambda: metric(agent, 'eventsink_bus_rejected_total{reason="frame_count"}') == 1,
            10,
            what="the short third frame rejected",
        )

        assert agent.stop(signal.SIGTERM) == 0
        agent.start()
        pub.join(agent, 4)  # the restarted agent remembers 1..3: only 4 is new
        head, dups = journal_head(agent.journal_path), metric(agent, "eventsink_bus_duplicates_total")
        for seq in (1, 2, 3, 4, 5):
            pub.sock.send_multipart(frames(seq))
        wait_until(lambda: journal_head(agent.journal_path) == head + 1, 10, what="5 journaled")
        wait_until(
            lambda: metric(agent, "eventsink_bus_duplicates_total") >= dups + 4, 10, what="1..4 counted as repeats"
        )
        assert agent.stop(signal.SIGTERM) == 0
    finally:
        pub.close()
    from bus.journal_reader import JournalReader

    with JournalReader(agent.journal_path, "cdr") as reader:
        names = [orjson.loads(p)["data"]["name"] for _, _, p in reader.read(0, 1000)]
    report(f"numbered repeats from a bare client: journaled {names}")
    assert names == ["n1", "n2", "n3", "n4", "n5"]  # each once, in order, across the restart
