"""Smoke test of the bench machinery: every row at tiny sizes, so `make test` proves `make bench` works.

Real nginx, wrk, agents, broker and publishers; no assert about speed, only
that every row measured what it was meant to (all events arrived, nothing was
lost, the files were written).
"""

from __future__ import annotations

import json
import os

from tests.bench import report
from tests.bench.suite import TINY, run_all


def test_every_row_runs_at_tiny_sizes(tmp_path):
    lines: list[str] = []
    r = run_all(TINY, say=lines.append, sizes_name="tiny")

    assert r["ceiling"]["wrk_1"]["requests"] > 0 and r["ceiling"]["wrk_1"]["errors"] == 0
    assert r["ceiling"]["wrk_32"]["requests"] > 0 and r["ceiling"]["wrk_32"]["errors"] == 0
    for row in (r["naive"], r["in_order"], r["bulk"], r["far"]["in_order"], r["far"]["in_flight_8"]):
        assert row["lost"] == 0 and row["events"] > 0 and row["rate"] > 0, row
    assert r["bulk"]["requests"] < r["bulk"]["events"]  # bulk envelopes really carried several events
    assert r["far"]["in_flight_8"]["max_concurrent"] > 1  # pipelining really used several connections
    assert r["latency"]["lost"] == 0 and 0 <= r["latency"]["p50_ms"] <= r["latency"]["p99_ms"]
    for key in ("broker", "broker_lean"):
        assert r[key]["lost_worst"] == 0 and r[key]["journaled"] == TINY.burst_events
        assert r[key]["proxy"]["received"] > 0
    for key in ("drain_one", "drain_bulk"):
        assert r[key]["lost"] == 0 and r[key]["rss_small_kb"] > 0 and r[key]["rss_full_kb"] > 0, r[key]
    assert r["in_order"]["cpu_seconds"] > 0

    last = {"table": [{"key": "in_order", "value": 1.0}]}
    paths = report.write(r, str(tmp_path), last)
    text = open(paths["txt"]).read()
    assert "agent, max_in_flight=1 (in order) -> nginx" in text and "vs last" in text
    saved = json.load(open(os.path.join(tmp_path, "latest.json")))
    assert len(saved["goals"]) == 11 and {g["met"] for g in saved["goals"]} <= {True, False}
    assert [row["key"] for row in saved["table"]][:3] == ["wrk_1", "wrk_32", "naive"]
    if report.chart(r, str(tmp_path / "chart.png")):
        assert os.path.getsize(tmp_path / "chart.png") > 1000
