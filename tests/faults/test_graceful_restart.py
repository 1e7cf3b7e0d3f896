"""Graceful restarts of the whole agent (SIGTERM, then a fresh start) under a
steady stream from a bare ZeroMQ PUB (docs/bus.md, "The Publisher"): nothing that reached the
broker is lost, nothing is journaled twice.

What "already handed to ZeroMQ" covers for a bare PUB: what the broker's
socket has received is journaled before it exits (it drains until quiet), what
was on the connection when it stopped too (it half-closes each connection so
the PUB ends it, and reads it to the end: bus/handover.py), and what the PUB
queued for the connection and had not yet written (everything published while
the agent is away, up to the PUB's SNDHWM) is sent to the next broker, because
the broker never unsubscribes. What it cannot cover: whatever a PUB publishes
beyond its SNDHWM while the agent is away, the publisher's to size.
"""

from __future__ import annotations

import collections
import signal
import threading
import time

import orjson
import pytest
import zmq

from tests.e2e.harness import Agent, sink
from tests.helpers import wait_until

RATE = 500  # events/s
RESTARTS = 2
PUB_SNDHWM = 100_000  # the whole stop + start (a few seconds at RATE) fits


class BarePublisher:
    """A plain PUB sending the two contract frames at a steady rate, numbered s0, s1, ..."""

    def __init__(self, endpoint: str):
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.PUB)
        self.sock.setsockopt(zmq.SNDHWM, PUB_SNDHWM)
        self.sock.connect(endpoint)
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        t0 = time.monotonic()
        while not self._stop.is_set():
            pause = t0 + self.sent / RATE - time.monotonic()
            if pause > 0:
                time.sleep(pause)  # pacing the stream
            payload = {"event": "conference_updated", "time": time.time(), "data": {"name": f"s{self.sent}"}}
            self.sock.send_multipart([b"conference_updated", orjson.dumps(payload)])
            self.sent += 1

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def close(self) -> None:
        self.sock.close(linger=0)
        self.ctx.term()


def journaled_names(agent: Agent) -> collections.Counter:
    from bus.journal_reader import JournalReader

    with JournalReader(agent.journal_path, "cdr") as reader:
        rows = reader.read(0, 10**7)
    return collections.Counter(orjson.loads(p)["data"]["name"] for _, topic, p in rows if topic == "conference_updated")


# alone: what is in transit when the broker's socket closes grows with a busy CPU. Lost 1-9 events in
# 3 of 4 parallel runs (one of them alone, the machine busy with other sessions), none in 2 serial runs:
# the assertion is stricter than the docstring's "at most the message in transit per restart".
@pytest.mark.alone
def test_graceful_restarts_under_a_bare_pub_stream_lose_and_duplicate_nothing(report):
    # The sink cannot deliver (nothing listens on port 9): its cursor stays, every row stays to be counted.
    agent = Agent([sink("cdr", "http://127.0.0.1:9/")], tuning={"max_retry_backoff": 3600})
    pub = BarePublisher(agent.publish_endpoint)
    try:
        agent.start()
        pub.start()
        wait_until(lambda: agent.status()["bus"]["received"] > 0, 10, what="the stream reaching the broker")
        first_seen = min(int(n[1:]) for n in journaled_names(agent))  # before this the PUB had not joined yet
        for _ in range(RESTARTS):
            before = pub.sent
            wait_until(lambda: pub.sent >= before + RATE, 10, what="a second of the stream")
            assert agent.stop(signal.SIGTERM) == 0
            agent.start()
        before = pub.sent
        wait_until(lambda: pub.sent >= before + RATE, 10, what="a second of the stream after the last restart")
        pub.stop()
        try:
            wait_until(
                lambda: sum(journaled_names(agent).values()) >= pub.sent - first_seen,
                30,
                what="the queued stream journaled",
            )
        except AssertionError:
            pass  # not a failure of its own: if some never arrive, `lost` below names them

        assert agent.stop(signal.SIGTERM) == 0
        names = journaled_names(agent)
    finally:
        pub.stop()
        pub.close()
        agent.cleanup()
    seen = {int(n[1:]) for n in names}
    lost = [i for i in range(first_seen, pub.sent) if i not in seen]
    duplicated = sum(c - 1 for c in names.values() if c > 1)
    report(
        f"graceful restarts x{RESTARTS} at {RATE}/s from a bare PUB: sent {pub.sent - first_seen} after joining, "
        f"lost {len(lost)} {lost[:10]}, journaled twice {duplicated}"
    )
    assert duplicated == 0
    assert lost == []
