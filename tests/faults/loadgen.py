"""A publisher process for the fault suite (`python -m tests.faults.loadgen`).

Sends COUNT events whose `data.fid` is `PREFIX-i` (a unique id the oracle
follows through the agent) to ENDPOINT over a real ZeroMQ connection, paced to
RATE events/s (0 = as fast as it can), and prints one JSON line when done:
`{"sent": N, "seconds": S}`. With `--mix`, two events in ten are a
`participant_media_streams_destroyed` / `participant_disconnected` pair (both
orders), so the shaping's held events are part of every fault; the rest are
`conference_updated`. Every event of a pair carries its own fid.

SIGTERM ends it early (the JSON line still reports what was sent).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time

from bus.publisher import Publisher

PACE_STEP = 0.005  # s between two pacing checks


def events(prefix: str, count: int, mix: bool):
    """(event name, data) for i in 0..count-1; every data carries fid = PREFIX-i."""
    for i in range(count):
        fid = f"{prefix}-{i}"
        slot = i % 10
        if mix and slot in (8, 9):
            uuid = f"{prefix}-u{i // 10}"
            media_first = (i // 10) % 2 == 0
            if (slot == 8) == media_first:
                yield "participant_media_streams_destroyed", {"uuid": uuid, "fid": fid, "media_streams": []}
            else:
                yield "participant_disconnected", {"uuid": uuid, "fid": fid, "disconnect_reason": "fault test"}
        else:
            yield "conference_updated", {"name": f"conf-{prefix}", "fid": fid}


def run(endpoint: str, prefix: str, count: int, rate: float, mix: bool, ready_timeout: float) -> int:
    stop = False

    def on_term(*_):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    sent = 0
    started = time.monotonic()
    with Publisher(endpoint, linger_ms=10_000) as pub:
        if not pub.wait_ready(ready_timeout):
            print(json.dumps({"sent": 0, "error": "the broker never subscribed"}), flush=True)
            return 1
        started = time.monotonic()
        for name, data in events(prefix, count, mix):
            if stop:
                break
            pub.publish(name, data)
            sent += 1
            if rate > 0:
                ahead = sent / rate - (time.monotonic() - started)
                if ahead > PACE_STEP:
                    time.sleep(ahead)
    print(json.dumps({"sent": sent, "seconds": round(time.monotonic() - started, 3)}), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.faults.loadgen")
    p.add_argument("endpoint")
    p.add_argument("prefix")
    p.add_argument("count", type=int)
    p.add_argument("--rate", type=float, default=0.0, help="events per second (0: as fast as possible)")
    p.add_argument("--mix", action="store_true", help="include held participant_disconnected pairs")
    p.add_argument("--ready-timeout", type=float, default=15.0)
    a = p.parse_args(argv)
    return run(a.endpoint, a.prefix, a.count, a.rate, a.mix, a.ready_timeout)


if __name__ == "__main__":
    sys.exit(main())
