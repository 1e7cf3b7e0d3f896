"""The chaos soak for one minute (`make soak` runs it for ten): a real agent with four sinks
(in order, eight in flight with dead letters, bulk, version 1), two Publisher clients and a
bare PUB, and the seed's faults (kill -9 of the broker, a worker, the whole agent; SIGTERM +
start; reload; replay; redrive; receivers answering 500, 503 with Retry-After, 413, 400,
stalling, resetting, going away). The full oracle (tests/faults/soak_oracle.py) must find
nothing: every Publisher event delivered to every sink exactly once after deduplication by
webhook-id, duplicates before it explained and bounded, order kept on the in-order sink,
version 1 merged. SOAK_SEED=N replays a seed (printed at the start and in the summary)."""

from __future__ import annotations

import os
import random

from tests.faults.soak import run_soak

SECONDS = 60


def test_soak_one_minute_exactly_once(report):
    seed = int(os.environ["SOAK_SEED"]) if os.environ.get("SOAK_SEED") else random.randrange(1 << 31)
    result = run_soak(SECONDS, seed, say=print)
    for line in result.lines:
        if not line.startswith(("note:", "PROBLEM:")):
            report(line)
    assert not result.problems, "\n".join([f"soak seed {seed}:", *result.problems])
