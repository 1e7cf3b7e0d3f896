"""Guards for the hot-path changes the bench drove (see tests/bench): the broker defers purging
delivered rows only while a burst is coming in, briefly, and never on a full or half-full journal."""

from __future__ import annotations

import time

from common.config import parse
from bus import broker as broker_module
from bus.broker import Broker
from tests.e2e.harness import render_toml


def make_broker(tmp_path) -> Broker:
    text = render_toml({"address": "10.44.99.2", "location": "Oslo"},
                       {"runtime_dir": str(tmp_path / "run"), "state_dir": str(tmp_path / "state"),
                        "max_journal_mb": 1}, {}, [])
    config = parse(text).config
    assert config is not None
    b = Broker(config)  # no open(): defer_purge needs no sockets and no journal
    b.backlogged = True
    b.purged_at = time.monotonic()
    b.used_estimate = 0
    return b


def test_purge_waits_while_a_burst_comes_in(tmp_path):
    assert make_broker(tmp_path).defer_purge()


def test_purge_runs_when_the_queue_ran_dry(tmp_path):
    b = make_broker(tmp_path)
    b.backlogged = False
    assert not b.defer_purge()


def test_purge_waits_at_most_the_bound(tmp_path):
    b = make_broker(tmp_path)
    b.purged_at = time.monotonic() - broker_module.PURGE_MAX_DEFER - 0.1
    assert not b.defer_purge()


def test_purge_never_waits_on_a_full_disk_or_journal_or_a_half_full_one(tmp_path):
    for change in ({"journal_full": True}, {"disk_full": True}, {"used_estimate": 600 * 1024}):
        b = make_broker(tmp_path)
        for name, value in change.items():
            setattr(b, name, value)
        assert not b.defer_purge(), change
