"""A publisher process for the fault suite (`python -m tests.faults.loadgen`).

Sends COUNT events whose `data.fid` is `PREFIX-i` (a unique id the oracle
follows through the agent) to ENDPOINT over a real ZeroMQ connection, paced to
RATE events/s (0 = as fast as it can). With `--mix`, two events in ten are a
`participant_media_streams_destroyed` / `participant_disconnected` pair (both
orders), so the shaping's held events are part of every fault; the rest are
`conference_updated`. Every event of a pair carries its own fid; the media
streams message also names its fid as its one stream's `stream_id`, so the
oracle can tell that a version 1 `participant_disconnected` carries its own
pair's streams (the soak, tests/faults/soak_oracle.py).

`--client publisher` (the default) sends through bus.publisher.Publisher;
`--client pub` through a bare pyzmq PUB socket (what a conference process that
does not use Publisher has), so the fault suite can compare the two.
`--no-wait` publishes at once, without waiting for the agent's subscription
(a conference process that starts before the agent).

It prints one JSON line once everything is published (`{"published": N}`,
before closing, so a test can start the agent then) and one when done:
`{"sent": N, "seconds": S, "pending": P, "dropped": D}` (pending: events the
Publisher still held at the end of its close timeout; dropped: past its
buffer_max). SIGTERM ends the sending early (the lines still report it).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time

import orjson
import zmq

from bus.publisher import Publisher

PACE_STEP = 0.005  # s between two pacing checks
BARE_PUB_SNDHWM = 1_000_000  # what a careful bare-PUB client sets (docs/bus.md)


class BarePub:
    """A bare PUB socket sending the contract's frames: no buffering, no readiness beyond a guess."""

    def __init__(self, endpoint: str):
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.PUB)
        self._sock.setsockopt(zmq.SNDHWM, BARE_PUB_SNDHWM)
        self._sock.connect(endpoint)
        self.pending = 0
        self.dropped = 0

    def wait_ready(self, timeout: float) -> bool:
        """A PUB cannot tell when it is subscribed: the connection being up is the best it knows."""
        return True

    def publish(self, event: str, data: dict) -> None:
        payload = orjson.dumps({"event": event, "time": time.time(), "data": data})
        self._sock.send_multipart([event.encode("utf-8"), payload])

    def close(self, timeout: float) -> None:
        self._sock.close(linger=int(timeout * 1000))
        self._ctx.term()


def events(prefix: str, count: int, mix: bool):
    """(event name, data) for i in 0..count-1; every data carries fid = PREFIX-i."""
    for i in range(count):
        fid = f"{prefix}-{i}"
        slot = i % 10
        if mix and slot in (8, 9):
            uuid = f"{prefix}-u{i // 10}"
            media_first = (i // 10) % 2 == 0
            if (slot == 8) == media_first:
                yield (
                    "participant_media_streams_destroyed",
                    {"uuid": uuid, "fid": fid, "media_streams": [{"stream_id": fid}]},
                )
            else:
                yield "participant_disconnected", {"uuid": uuid, "fid": fid, "disconnect_reason": "fault test"}
        else:
            yield "conference_updated", {"name": f"conf-{prefix}", "fid": fid}


def open_client(client: str, endpoint: str):
    if client == "pub":
        return BarePub(endpoint)
    return Publisher(endpoint)


def close_client(pub, timeout: float) -> None:
    """Close with TIMEOUT for what is still queued (an older Publisher, without flush(), took its linger
    at creation)."""
    if isinstance(pub, BarePub) or hasattr(pub, "flush"):
        pub.close(timeout)
    else:
        pub._sock.setsockopt(zmq.LINGER, int(timeout * 1000))
        pub.close()


def send(pub, prefix: str, count: int, rate: float, mix: bool, stop) -> tuple[int, float]:
    """Publish up to COUNT events paced to RATE; (sent, seconds)."""
    sent = 0
    started = time.monotonic()
    for name, data in events(prefix, count, mix):
        if stop():
            break
        pub.publish(name, data)
        sent += 1
        if rate > 0:
            ahead = sent / rate - (time.monotonic() - started)
            if ahead > PACE_STEP:
                time.sleep(ahead)
    return sent, time.monotonic() - started


def run(
    endpoint: str,
    prefix: str,
    count: int,
    rate: float,
    mix: bool,
    *,
    client: str = "publisher",
    wait: bool = True,
    ready_timeout: float = 15.0,
    close_timeout: float = 30.0,
) -> int:
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    pub = open_client(client, endpoint)
    try:
        if wait and not pub.wait_ready(ready_timeout):
            print(json.dumps({"sent": 0, "error": "the broker never subscribed"}), flush=True)
            return 1
        sent, seconds = send(pub, prefix, count, rate, mix, lambda: bool(stopping))
        print(json.dumps({"published": sent}), flush=True)
    finally:
        close_client(pub, close_timeout)
    result = {
        "sent": sent,
        "seconds": round(seconds, 3),
        "pending": getattr(pub, "pending", 0),
        "dropped": getattr(pub, "dropped", 0),
    }
    print(json.dumps(result), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.faults.loadgen")
    p.add_argument("endpoint")
    p.add_argument("prefix")
    p.add_argument("count", type=int)
    p.add_argument("--rate", type=float, default=0.0, help="events per second (0: as fast as possible)")
    p.add_argument("--mix", action="store_true", help="include held participant_disconnected pairs")
    p.add_argument(
        "--client",
        choices=("publisher", "pub"),
        default="publisher",
        help="bus.publisher.Publisher, or a bare PUB socket",
    )
    p.add_argument("--no-wait", action="store_true", help="publish at once, without waiting for the agent")
    p.add_argument("--ready-timeout", type=float, default=15.0)
    p.add_argument("--close-timeout", type=float, default=30.0, help="seconds close() may take for what is queued")
    a = p.parse_args(argv)
    return run(
        a.endpoint,
        a.prefix,
        a.count,
        a.rate,
        a.mix,
        client=a.client,
        wait=not a.no_wait,
        ready_timeout=a.ready_timeout,
        close_timeout=a.close_timeout,
    )


if __name__ == "__main__":
    sys.exit(main())
