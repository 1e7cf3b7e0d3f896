"""bus/handover.py with real ZeroMQ sockets: a bare PUB sending 5,000 messages a second to a
bound SUB (10 times the fault suite's rate) loses nothing when the SUB's side ends the
connection through the hand-over, and the PUB's later messages wait for the next subscriber.
(A flood that fills the socket buffer can lose the part of a write ZeroMQ had half-written:
the residual risk the README names; a plain close loses far more, see the module.)"""

from __future__ import annotations

import os
import threading
import time

import zmq

from bus import handover
from tests.helpers import short_tmpdir

SEND_MAX = 200_000  # the stream is bounded in count ...
SEND_SECONDS = 10.0  # ... and in time
BURST, BURST_GAP = 25, 0.005  # 25 messages every 5 ms: 5,000 a second


def numbers(sock) -> list[int]:
    out = []
    while True:
        try:
            out.append(int.from_bytes(sock.recv(zmq.NOBLOCK)[:8], "big"))
        except zmq.Again:
            return out


def bound_sub(ctx, endpoint):
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.setsockopt(zmq.RCVHWM, 0)
    sub.setsockopt(zmq.LINGER, 0)
    sub.bind(endpoint)
    return sub


def test_ending_the_connections_loses_nothing_a_fast_bare_pub_wrote():
    with short_tmpdir() as d:
        endpoint = f"ipc://{d}/in.sock"
        ctx, pub_ctx = zmq.Context(), zmq.Context()
        sub = bound_sub(ctx, endpoint)
        pub = pub_ctx.socket(zmq.PUB)
        pub.setsockopt(zmq.SNDHWM, 0)
        pub.setsockopt(zmq.LINGER, 0)
        pub.connect(endpoint)
        deadline = time.monotonic() + 10
        while not sub.poll(10):  # the PUB sends only once the subscription reached it
            assert time.monotonic() < deadline, "never subscribed"
            pub.send(b"warm-up")
        while sub.poll(50):
            sub.recv()
        sent, stop = [0], threading.Event()

        def stream():
            started = time.monotonic()
            while not stop.is_set() and sent[0] < SEND_MAX and time.monotonic() < started + SEND_SECONDS:
                for _ in range(BURST):
                    pub.send(sent[0].to_bytes(8, "big") + b"x" * 90)
                    sent[0] += 1
                pause = started + sent[0] / BURST * BURST_GAP - time.monotonic()
                if pause > 0:
                    time.sleep(pause)  # pacing the stream

        sender = threading.Thread(target=stream)
        sender.start()
        got = []
        while sent[0] < 2_500 and sender.is_alive():
            if sub.poll(10):
                got += numbers(sub)
        connections = handover.accepted(endpoint)
        assert len(connections) == 1 and all(link.startswith("socket:") for link in connections.values())
        handover.stop_accepting(endpoint)
        assert not os.path.exists(f"{d}/in.sock")
        handover.end_writing(connections)
        deadline = time.monotonic() + 5
        while handover.still_open(connections):
            assert time.monotonic() < deadline, "the publisher never ended its connection"
            if sub.poll(5):
                got += numbers(sub)
        got += numbers(sub)
        sub.close()
        after = bound_sub(ctx, endpoint)  # the next broker: gets what the PUB queued meanwhile
        time.sleep(0.2)  # the stream goes on a little (bounded), queued for the new connection
        stop.set()
        sender.join()
        while after.poll(500):
            got += numbers(after)
        after.close()
        pub.close()
        pub_ctx.term()
        ctx.term()
    assert sent[0] > 2_500
    assert sorted(got) == list(range(sent[0]))  # each once: nothing lost at the hand-over


def test_accepted_finds_nothing_for_other_endpoints():
    assert handover.accepted("tcp://127.0.0.1:1") == {}
    assert handover.ipc_address("ipc://@abstract") == "\0abstract"
