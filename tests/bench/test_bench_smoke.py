"""Smoke test of the bench machinery: every row at tiny sizes, so `make test` proves `make bench` works.

Real nginx, wrk, agents, broker and publishers; no assert about speed, only
that every row measured what it was meant to (all events arrived, nothing was
lost, the files were written).
"""

from __future__ import annotations

import json
import os
from dataclasses import replace

from tests.bench import calls_per_event, loadgen, paced, report
from tests.bench.servers import Nginx
from tests.bench.suite import TINY, run_all


def assert_paced_runs(row: dict) -> None:
    """Every event of every paced run published and delivered, and CPU seen in its window."""
    for run in row["by_rate"]:
        assert run["lost"] == 0 and run["published"] == run["events"], run
        assert run["delivered_in_window"] > 0 and run["cpu_seconds"] > 0 and run["cpu_ticks_seconds"] >= 0, run


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
        replay = r[key]["replay"]  # the drained events, replayed from retention
        assert replay["lost"] == 0 and replay["events"] == r[key]["events"] and replay["rate"] > 0, replay
    # schedstat (ns), not the clock ticks of cpu_seconds: 200 events in order can take less than a tick a process
    assert r["in_order"]["cpu_task_seconds"] > 0
    for key in ("flat", "paced"):  # the bare pycurl loop
        assert r["curl"][key]["requests"] > 0 and r["curl"][key]["ok"] == r["curl"][key]["requests"], r["curl"]
        assert r["curl"][key]["cpu_seconds"] > 0
    for key, processes in (("paced_naive", 1), ("paced_1", 3), ("paced_3", 5)):  # every process of the agent
        assert r[key]["processes"] == processes
        assert [run["paced_at"] for run in r[key]["by_rate"]] == sorted(TINY.paced_rates)
        assert_paced_runs(r[key])
    assert r["paced_floor"]["processes"] == 2 and [run["paced_at"] for run in r["paced_floor"]["by_rate"]] == [200]
    assert_paced_runs(r["paced_floor"])
    pc = r["publisher_cost"]  # both publish paths measured, every event arrived
    assert pc["old"]["lost"] == 0 and pc["new"]["lost"] == 0 and pc["ratio"] > 0, pc
    assert r["idle"]["processes"] == 5 and r["idle"]["delivered_in_window"] == 0
    assert r["idle"]["cpu_seconds"] > 0 and r["idle"]["seconds"] >= TINY.idle_seconds
    assert r["idle_console"]["processes"] == 6 and r["idle_console"]["delivered_in_window"] == 0  # + the console
    lf = r["live_follow"]  # the console's cost: both runs measured in one agent, the follower got every POST of its run
    assert lf["processes"] == 4 and lf["nobody"]["lost"] == 0 and lf["one_browser"]["lost"] == 0
    assert lf["followed"] >= lf["one_browser"]["delivered"] > 0
    ctl = r["ctl_status"]  # eventsinkctl and curl both answered by the agent, every run timed
    assert len(ctl["ctl"]["runs_ms"]) == len(ctl["curl"]["runs_ms"]) == TINY.ctl_runs and ctl["ratio"] > 0, ctl

    calls = r["calls_per_event"]  # counted in the one sink worker, over events it delivered
    assert calls["lost"] == 0 and calls["delivered_in_window"] > 0 and calls["calls_per_event"] > 0, calls
    last = {"table": [{"key": "in_order", "value": 1.0}]}
    paths = report.write(r, str(tmp_path), last)
    text = open(paths["txt"]).read()
    assert "agent, max_in_flight=1 (in order) -> nginx" in text and "vs last" in text
    saved = json.load(open(os.path.join(tmp_path, "latest.json")))
    # the idle-cost goals, the Publisher's cost, the console's and eventsinkctl's start, the floor and the
    # worker's calls per event; the retired goals are rows only
    assert len(saved["goals"]) == 18 and {g["met"] for g in saved["goals"]} <= {True, False}
    assert not [g for g in saved["goals"] if "wrk" in g["what"] or "proxy" in g["what"] or "bulk /" in g["what"]]
    retired = [row["key"] for row in saved["table"] if "(retired goal" in row["note"]]
    assert retired == [
        "ratio_in_order_wrk_1",
        "ratio_bulk_in_order",
        "broker_ratio",
        "broker_lean_ratio",
        "paced_200_ratio",
    ]
    assert [g for g in saved["goals"] if g["what"].startswith("paced 200 ev/s, 1 sink: agent / floor")]
    assert [row["key"] for row in saved["table"]][:4] == ["wrk_1", "wrk_32", "curl_1", "curl_paced_cpu"]
    assert {
        "paced_200_1",
        "paced_200_naive",
        "paced_200_3_core",
        "paced_200_3_ratio",
        "idle_3",
        "paced_200_floor",
        "paced_200_floor_ratio",
        "paced_200_naive_floor_ratio",
    } <= {row["key"] for row in saved["table"]}
    if report.chart(r, str(tmp_path / "chart.png")):
        assert os.path.getsize(tmp_path / "chart.png") > 1000


def test_the_floor_delivers_every_event_of_a_few_hundred(tmp_path):
    sizes = replace(TINY, paced_rates=(paced.FLOOR_RATE,), paced_warmup=0.5, paced_seconds=1.5, paced_tail=0.1)
    corpus_file = str(tmp_path / "paced.pickle")
    counts = paced.prepare(loadgen.corpus(paced.paced_messages(sizes) + 100), sizes, corpus_file)
    with Nginx() as nginx:
        row = paced.floor_paced(nginx, sizes, corpus_file, counts, str(tmp_path), "floor-smoke")
        answered = nginx.log.tally("/log/floor-smoke")

    (run,) = row["by_rate"]
    assert run["events"] >= 400 and run["published"] == run["events"] == run["delivered"], run
    assert (
        answered.requests == answered.ok == answered.events == run["events"]
    )  # nginx's access log: one 2xx line per event
    # The window is about 300 events (fewer by those delivered past the warm-up before it opened): tens of ms
    # of CPU in two processes, so more than 1 ms by schedstat and more than nothing in clock ticks.
    assert run["delivered_in_window"] >= 200 and run["cpu_seconds"] > 0.001 and run["cpu_ticks_seconds"] > 0, run


def test_calls_per_event_row_at_a_small_count(tmp_path):
    """The calls-per-event row alone, at TINY sizes: the probe counted the one worker's calls over events
    it delivered."""
    corpus = loadgen.corpus(200)
    with Nginx() as nginx:
        calls = calls_per_event.calls_per_event(nginx, TINY, corpus, str(tmp_path))
    assert calls["lost"] == 0 and calls["delivered_in_window"] > 0, calls
    assert calls["calls_in_window"] > calls["delivered_in_window"]  # more than one call per event: counted
    (row,) = report._calls_rows({"calls_per_event": calls})
    assert row.key == "calls_per_event" and row.value == calls["calls_per_event"]
