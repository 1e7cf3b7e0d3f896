"""Bench load: the event corpus, and the small processes of the bus burst.

`corpus(n)` is N realistic bus messages (topic, payload) from the conference
simulator (tools/simulator.py, fixed seed), encoded once. The processes, each
`python -m tests.bench.loadgen KIND ...`, print one line when ready and one
line of results when done:

- `publish ENDPOINT CORPUS_FILE COUNT [KIND [RATE]]`: connects a bus.publisher.Publisher
  (KIND `publisher`, the default: the client conference processes use) or a
  FastPublisher (KIND `lean`), waits until the peer has subscribed, prints
  `ready`, waits for a line on stdin ("go"),
  sends COUNT messages of the corpus as fast as it can (or, with RATE > 0, message
  i at go + i / RATE: absolute deadlines, so a late wake-up is caught up and the
  rate stays honest; given up after COUNT / RATE + PACED_SLACK s), prints
  `sent T0 T1 SENT` (wall times, messages sent) and closes (lingering until
  ZeroMQ has handed everything over);
- `proxy IN OUT`: the raw ZeroMQ proxy (XSUB bound on IN, XPUB bound on OUT,
  `zmq.proxy`), the broker's baseline; runs until killed;
- `count ENDPOINT COUNT IDLE`: a SUB connected to ENDPOINT counting messages
  until COUNT arrived or none came for IDLE s; prints `COUNT FIRST LAST`.
"""

from __future__ import annotations

import bisect
import pickle
import sys
import time

import orjson
import zmq

from bus.publisher import Publisher
from tools.simulator import batches

HWM = 2_000_000
_MORE = int(zmq.SNDMORE)
CORPUS_SEED = 7
READY_TIMEOUT = 20.0
PACED_SLACK = 10.0  # s a paced publisher may run late before it gives up


class FastPublisher:
    """The bench's load generator: bus.publisher.Publisher's socket and frames, without its per-message
    Python overhead (pyzmq's send_multipart does enum arithmetic per frame), so the load steals as
    little CPU from the agent as it can."""

    def __init__(self, endpoint: str, linger_ms: int = 60_000):
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.XPUB)
        self._sock.setsockopt(zmq.SNDHWM, 1_000_000)
        self._sock.setsockopt(zmq.LINGER, linger_ms)
        self._sock.connect(endpoint)
        self._ready = False

    def wait_ready(self, timeout: float) -> bool:
        """True once the peer has subscribed (within TIMEOUT seconds)."""
        deadline = time.monotonic() + timeout
        while not self._ready:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if self._sock.poll(max(1, int(remaining * 1000)), zmq.POLLIN) and self._sock.recv()[:1] == b"\x01":
                self._ready = True
        return True

    def send(self, topic: bytes, payload: bytes) -> None:
        self._sock.send(topic, _MORE)
        self._sock.send(payload, 0)

    def send_frames(self, frames: list[bytes]) -> None:
        for frame in frames[:-1]:
            self._sock.send(frame, _MORE)
        self._sock.send(frames[-1], 0)

    def publish(self, event: str, data: dict) -> None:
        """EVENT with DATA, stamped now (as bus.publisher.Publisher.publish)."""
        self.send(event.encode(), orjson.dumps({"event": event, "time": time.time(), "data": data}))

    def close(self) -> None:
        if not self._sock.closed:
            self._sock.close()
        self._ctx.term()


class Corpus(list):
    """Bus messages (topic, payload) of the simulated mix, and where its actions end.

    `take(n)` never cuts an action in two: a `participant_disconnected` without its
    media streams message would wait `media_streams_wait` and distort a rate."""

    def __init__(self, messages: list[tuple[bytes, bytes]], ends: list[int]):
        super().__init__(messages)
        self.ends = ends  # ascending: indices just past the end of each action

    def take(self, n: int) -> list[tuple[bytes, bytes]]:
        """The first n messages, or a few more, up to the end of an action."""
        at = bisect.bisect_left(self.ends, n)
        return self[: self.ends[at] if at < len(self.ends) else len(self)]


def corpus(n: int, seed: int = CORPUS_SEED) -> Corpus:
    """At least N bus messages of the simulated mix (whole actions), `time` as the simulator made it."""
    messages: list[tuple[bytes, bytes]] = []
    ends: list[int] = []
    for batch in batches(seed):
        if len(messages) >= n:
            break
        for event, data in batch:
            messages.append((event.encode(), orjson.dumps({"event": event, "time": _sim_time(data), "data": data})))
        ends.append(len(messages))
    return Corpus(messages, ends)


def _sim_time(data: dict) -> float:
    for key in ("end_time", "connect_time", "start_time"):
        value = data.get(key)
        if isinstance(value, (int, float)):
            return float(value)
    return 1_700_000_000.0


def event_dicts(n: int, seed: int = CORPUS_SEED) -> list[tuple[str, dict]]:
    """At least N (event, data) pairs of the mix (whole actions), for publishing with a fresh `time`."""
    out: list[tuple[str, dict]] = []
    for batch in batches(seed):
        if len(out) >= n:
            break
        out += batch
    return out


def write_corpus(path: str, messages: list[tuple[bytes, bytes]]) -> None:
    with open(path, "wb") as fh:
        pickle.dump(messages, fh, protocol=pickle.HIGHEST_PROTOCOL)


def _publish(endpoint: str, corpus_file: str, count: int, kind: str, rate: float = 0.0) -> int:
    with open(corpus_file, "rb") as fh:
        messages = pickle.load(fh)  # the bench's own temp file
    frames = [messages[i % len(messages)] for i in range(count)]
    pub = Publisher(endpoint) if kind == "publisher" else FastPublisher(endpoint)
    try:
        if not pub.wait_ready(READY_TIMEOUT):
            print("not-ready", flush=True)
            return 1
        print("ready", flush=True)
        sys.stdin.readline()
        t0 = time.time()
        sent = _send_paced(pub, frames, rate) if rate > 0 else _send_all(pub, frames)
        t1 = time.time()
        print(f"sent {t0!r} {t1!r} {sent}", flush=True)
    finally:
        if isinstance(pub, Publisher):
            pub.close(timeout=60.0)  # time for ZeroMQ to hand the burst over
        else:
            pub.close()
    return 0


def _send_all(pub: Publisher | FastPublisher, frames: list[tuple[bytes, bytes]]) -> int:
    """FRAMES as fast as PUB takes them (no per-message indirection: the burst rows measure this loop)."""
    if isinstance(pub, Publisher):
        send_frames = pub.send_frames  # the shipped client, as a conference process uses it
        for topic, payload in frames:
            send_frames([topic, payload])
    else:
        send = pub.send
        for topic, payload in frames:
            send(topic, payload)
    return len(frames)


def _send_paced(pub: Publisher | FastPublisher, frames: list[tuple[bytes, bytes]], rate: float) -> int:
    """Message i at start + i / RATE (absolute deadlines: a late wake-up is caught up, so the rate is
    honest); gives up PACED_SLACK s after the last one was due. Returns how many were sent."""
    send_frames = pub.send_frames
    start = time.monotonic()
    give_up = start + len(frames) / rate + PACED_SLACK
    for i, (topic, payload) in enumerate(frames):
        now = time.monotonic()
        if now > give_up:
            return i
        due = start + i / rate
        if due > now:
            time.sleep(due - now)
        send_frames([topic, payload])
    return len(frames)


def _proxy(inbound: str, outbound: str) -> int:
    ctx = zmq.Context()
    xsub = ctx.socket(zmq.XSUB)
    xsub.setsockopt(zmq.RCVHWM, HWM)
    xsub.setsockopt(zmq.LINGER, 0)
    xsub.bind(inbound)
    xpub = ctx.socket(zmq.XPUB)
    xpub.setsockopt(zmq.SNDHWM, HWM)
    xpub.setsockopt(zmq.LINGER, 0)
    xpub.bind(outbound)
    print("ready", flush=True)
    zmq.proxy(xsub, xpub)  # until killed
    return 0


def _count(endpoint: str, count: int, idle: float) -> int:
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 0)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(endpoint)
    print("ready", flush=True)
    seen, first, last = 0, 0.0, 0.0
    deadline = time.monotonic() + 600
    while seen < count and time.monotonic() < deadline and sub.poll(int(idle * 1000)):
        for _ in range(10_000):
            try:
                sub.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            seen += 1
            if seen == 1:
                first = time.time()
        last = time.time()
    print(f"{seen} {first!r} {last!r}", flush=True)
    sub.close()
    ctx.term()
    return 0


def main(argv: list[str]) -> int:
    kind, args = argv[0], argv[1:]
    if kind == "publish":
        return _publish(
            args[0],
            args[1],
            int(args[2]),
            args[3] if len(args) > 3 else "publisher",
            float(args[4]) if len(args) > 4 else 0.0,
        )
    if kind == "proxy":
        return _proxy(args[0], args[1])
    if kind == "count":
        return _count(args[0], int(args[1]), float(args[2]))
    print(f"unknown kind {kind!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
