"""The bench's output: one text table, the goals as ratios, JSON, and a PNG chart of the throughput rows.

`rows(results)` turns the measurements (tests/bench/runs.py) into table rows
(with a "vs last" column when a previous run's JSON is given), `goals(results)`
checks the issue's goals, all ratios of figures from the same run. `write`
saves `bench-STAMP.{txt,json,png}` and `latest.*` under the results folder.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass


@dataclass
class Row:
    row: str
    what: str
    value: float
    unit: str
    key: str  # stable name, for comparing runs
    note: str = ""
    throughput: bool = False  # drawn in the chart


def _fmt(value: float, unit: str) -> str:
    if unit in ("ev/s", "req/s"):
        return f"{value:,.0f} {unit}"
    if unit == "MB":
        return f"{value:,.1f} {unit}"
    return f"{value:,.2f} {unit}"


def _runs(d: dict) -> str:
    """ "; median of 12,000 / 13,000 / 14,000" when the row was run more than once."""
    values = d.get("runs") or []
    return "; median of " + " / ".join(f"{v:,.0f}" for v in values) if len(values) > 1 else ""


def rows(r: dict) -> list[Row]:
    out: list[Row] = []
    c = r["ceiling"]
    out.append(Row("1", "ceiling: wrk, 1 connection -> nginx", c["wrk_1"]["rps"], "req/s", "wrk_1",
                   f"{c['wrk_1']['body_bytes']}-byte POST" + _runs(c["wrk_1"]), True))
    out.append(Row("1", "ceiling: wrk, 32 connections -> nginx", c["wrk_32"]["rps"], "req/s", "wrk_32",
                   f"{c['wrk_32']['threads']} threads" + _runs(c["wrk_32"]), True))
    nv = r["naive"]
    out.append(Row("2", "naive peer (zmq SUB + requests), same envelope -> nginx", nv["rate"], "ev/s", "naive",
                   f"{nv['events']} events, lost {nv['lost']}" + _runs(nv), True))
    io = r["in_order"]
    out.append(Row("3", "agent, max_in_flight=1 (in order) -> nginx", io["rate"], "ev/s", "in_order",
                   f"{io['events']} events, lost {io['lost']}" + _runs(io), True))
    lat = r["latency"]
    out.append(Row("3", f"  latency p50, paced {lat['rate']:.0f} ev/s", lat["p50_ms"], "ms", "latency_p50",
                   "receiver side: arrival - event time"))
    out.append(Row("3", f"  latency p99, paced {lat['rate']:.0f} ev/s", lat["p99_ms"], "ms", "latency_p99",
                   f"max {lat['max_ms']:.1f} ms over {lat['events']} events"))
    f = r["far"]
    out.append(Row("4", f"agent, in order -> far receiver ({f['delay_ms']:.0f} ms)", f["in_order"]["rate"], "ev/s",
                   "far_in_order", f"{f['in_order']['events']} events", True))
    out.append(Row("4", f"agent, max_in_flight=8 -> far receiver ({f['delay_ms']:.0f} ms)", f["in_flight_8"]["rate"],
                   "ev/s", "far_in_flight_8",
                   f"{f['in_flight_8']['events']} events, {f['in_flight_8']['max_concurrent']} connections", True))
    b = r["bulk"]
    out.append(Row("5", "agent, bulk of 100 -> nginx", b["rate"], "ev/s", "bulk",
                   f"{b['events']} events in {b['requests']} POSTs, lost {b['lost']}" + _runs(b), True))
    for key, how in (("broker", "Publisher"), ("broker_lean", "lean")):
        br = r[key]
        px = br["proxy"]
        out.append(Row("6", f"broker alone, journaled/s, {br['publishers']} {how} publishers", br["rate"], "ev/s",
                       key, f"lost {br.get('lost_worst', br['lost'])} of {br['events']} (journal rows)" + _runs(br),
                       True))
        out.append(Row("6", f"raw ZeroMQ proxy, the same {how} publishers", px["rate"], "ev/s", key + "_proxy",
                       f"lost {px['lost']} of {px['events']}" + _runs(px), True))
    for key, what in (("drain_one", "one by one"), ("drain_bulk", "bulk of 100")):
        d = r[key]
        out.append(Row("7", f"drain {d['events'] - 1:,} backlog, {what}", d["delivering_seconds"], "s", key,
                       f"first to last 2xx; +{d['backoff_wait']:.2f} s backoff wait after nginx came up"))
        out.append(Row("7", f"  drain rate, {what}", d["rate"], "ev/s", key + "_rate", "", True))
    d = r["drain_one"]
    out.append(Row("8", f"worker RSS, backlog {d['rss_small_backlog']:,}", d["rss_small_kb"] / 1024, "MB", "rss_small"))
    out.append(Row("8", f"worker RSS, backlog {d['rss_full_backlog']:,}", d["rss_full_kb"] / 1024, "MB", "rss_full",
                   f"difference {(d['rss_full_kb'] - d['rss_small_kb']) / 1024:.1f} MB"))
    out.append(Row("8", "agent CPU per 10,000 events, in order", io["cpu_per_10k"], "s", "cpu_in_order",
                   "supervisor + broker + worker, utime + stime"))
    out.append(Row("8", "agent CPU per 10,000 events, bulk", b["cpu_per_10k"], "s", "cpu_bulk"))
    out.append(Row("8", "naive peer CPU per 10,000 events", nv["cpu_per_10k"], "s", "cpu_naive"))
    out.append(Row("8", "broker CPU per event in the burst", r["broker"]["cpu_us_per_event"], "us", "cpu_broker",
                   "validate + journal + fan-out"))
    return out


@dataclass
class Goal:
    what: str
    ratio: float
    target: float
    met: bool
    detail: str


def _ratio(a: float, b: float) -> float:
    return a / b if b else 0.0


def goals(r: dict) -> list[Goal]:
    io, nv, wrk1 = r["in_order"]["rate"], r["naive"]["rate"], r["ceiling"]["wrk_1"]["rps"]
    far_1, far_8 = r["far"]["in_order"]["rate"], r["far"]["in_flight_8"]["rate"]
    br, px, bl = r["broker"], r["broker"]["proxy"], r["broker_lean"]
    lost = max(b.get("lost_worst", b["lost"]) for b in (br, bl))
    d1, db = r["drain_one"], r["drain_bulk"]
    rss = (d1["rss_full_kb"] - d1["rss_small_kb"]) / 1024
    p99 = r["latency"]["p99_ms"]
    g = [
        Goal("in order >= 2.5x the naive peer", _ratio(io, nv), 2.5, _ratio(io, nv) >= 2.5, f"{io:,.0f} / {nv:,.0f} ev/s"),
        Goal("in order >= 0.4x wrk, 1 connection", _ratio(io, wrk1), 0.4, _ratio(io, wrk1) >= 0.4,
             f"{io:,.0f} / {wrk1:,.0f}"),
        Goal("max_in_flight=8 >= 6x in order (far receiver)", _ratio(far_8, far_1), 6, _ratio(far_8, far_1) >= 6,
             f"{far_8:,.0f} / {far_1:,.0f} ev/s"),
        Goal("bulk of 100 >= 10x in order", _ratio(r["bulk"]["rate"], io), 10, _ratio(r["bulk"]["rate"], io) >= 10,
             f"{r['bulk']['rate']:,.0f} / {io:,.0f} ev/s"),
        Goal("broker burst: 0 lost (worst run)", float(lost), 0, lost == 0,
             f"{br['journaled']} of {br['events']} journaled"),
        Goal("broker >= 0.4x raw ZeroMQ proxy (Publisher)", _ratio(br["rate"], px["rate"]), 0.4,
             _ratio(br["rate"], px["rate"]) >= 0.4, f"{br['rate']:,.0f} / {px['rate']:,.0f} ev/s"),
        Goal("  the same with lean publishers", _ratio(bl["rate"], bl["proxy"]["rate"]), 0.4,
             _ratio(bl["rate"], bl["proxy"]["rate"]) >= 0.4, f"{bl['rate']:,.0f} / {bl['proxy']['rate']:,.0f} ev/s"),
        Goal("drain one by one < 60 s", d1["delivering_seconds"], 60, d1["delivering_seconds"] < 60,
             f"{d1['seconds']:.1f} s counting the backoff wait"),
        Goal("drain bulk < 10 s", db["delivering_seconds"], 10, db["delivering_seconds"] < 10,
             f"{db['seconds']:.1f} s counting the backoff wait"),
        Goal("p99 publish-to-2xx < 10 ms at 500 ev/s", p99, 10, p99 < 10, f"p50 {r['latency']['p50_ms']:.2f} ms"),
        Goal("worker RSS difference < 10 MB", rss, 10, rss < 10, f"{d1['rss_small_kb'] / 1024:.1f} -> {d1['rss_full_kb'] / 1024:.1f} MB"),
    ]
    return g


def render(r: dict, last: dict | None = None) -> str:
    previous = {row["key"]: row["value"] for row in (last or {}).get("table", [])}
    table = rows(r)
    lines = [f"eventsink-agent bench, {r['when']} ({r['cpus']} CPUs, load {r['load']}); sizes: {r['sizes_name']}",
             "Publisher = bus.publisher.Publisher (the shipped client); lean = raw ZeroMQ sends (tests/bench/loadgen.py)",
             ""]
    head = f"{'row':<4}{'measurement':<58}{'value':>16}{'vs last':>9}  notes"
    lines += [head, "-" * len(head)]
    for row in table:
        before = previous.get(row.key)
        vs = f"{row.value / before:.2f}x" if before else "-"
        lines.append(f"{row.row:<4}{row.what:<58}{_fmt(row.value, row.unit):>16}{vs:>9}  {row.note}")
    lines += ["", f"{'goal':<50}{'measured':>10}{'target':>9}  result"]
    for goal in goals(r):
        lines.append(f"{goal.what:<50}{goal.ratio:>10.2f}{goal.target:>9g}  {'MET' if goal.met else 'MISSED'}"
                     f"  ({goal.detail})")
    return "\n".join(lines)


def to_json(r: dict) -> dict:
    return {**r, "table": [row.__dict__ for row in rows(r)], "goals": [g.__dict__ for g in goals(r)]}


def chart(r: dict, path: str) -> bool:
    """A PNG bar chart of the throughput rows; False when matplotlib is not there."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    data = [row for row in rows(r) if row.throughput]
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(data) + 1.5))
    labels = [f"{row.row} {row.what.strip()}" for row in data]
    values = [max(row.value, 0.1) for row in data]
    bars = ax.barh(range(len(data)), values, color=["#888888" if row.unit == "req/s" else "#3477b5" for row in data])
    ax.set_yticks(range(len(data)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("events (requests for wrk) per second, log scale")
    ax.set_title(f"eventsink-agent bench {r['when']}")
    for bar, row in zip(bars, data):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {row.value:,.0f}", va="center", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def load_last(folder: str) -> dict | None:
    try:
        with open(os.path.join(folder, "latest.json")) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def write(r: dict, folder: str, last: dict | None) -> dict[str, str]:
    """Saves text, JSON and PNG (stamped, and as latest.*); returns the paths written."""
    os.makedirs(folder, exist_ok=True)
    stamp = r["when"].replace(":", "").replace("-", "").replace(" ", "-")
    paths = {}
    text = render(r, last)
    base = os.path.join(folder, f"bench-{stamp}")
    with open(base + ".txt", "w") as fh:
        fh.write(text + "\n")
    paths["txt"] = base + ".txt"
    with open(base + ".json", "w") as fh:
        json.dump(to_json(r), fh, indent=1, default=str)
    paths["json"] = base + ".json"
    if chart(r, base + ".png"):
        paths["png"] = base + ".png"
    for ext, path in list(paths.items()):
        shutil.copyfile(path, os.path.join(folder, f"latest.{ext}"))
    return paths
