"""The bench's output: one text table, the goals, JSON, and a PNG chart of the throughput rows.

`rows(results)` turns the measurements (tests/bench/runs.py, tests/bench/paced.py)
into table rows (with a "vs last" column when a previous run's JSON is given),
`goals(results)` checks the idle-cost goals (and the Publisher's cost, the console's, and
eventsinkctl status against curl on the same socket), each a figure or a ratio of
figures from the same run against its bound: the agent with one sink at a paced 200 ev/s
is judged against the floor (tests/bench/floor.py, alternated with it run for run), no longer
against the naive peer. Retired goals stay in the table as ratio rows noted "(retired goal)".
`write` saves `bench-STAMP.{txt,json,png}` and `latest.*` under the results folder.
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


def _ratio(a: float, b: float) -> float:
    return a / b if b else 0.0


def _runs(d: dict) -> str:
    """ "; median of 12,000 / 13,000 / 14,000" when the row was run more than once."""
    values = d.get("runs") or []
    return "; median of " + " / ".join(f"{v:,.0f}" for v in values) if len(values) > 1 else ""


def paced_at(d: dict, rate: float) -> dict:
    """The run at RATE of a paced row (tests/bench/paced.py)."""
    return next(run for run in d["by_rate"] if run["paced_at"] == rate)


def _window(run: dict) -> str:
    """ "12.3% of one core; 2,000 events in 10.0 s", and what went wrong, if anything."""
    text = f"{run['core_percent']:.1f}% of one core; {run['delivered_in_window']:,} events in {run['seconds']:.1f} s"
    if run["lag_at_close"] > run["paced_at"] / 2:
        text += f"; LAGGED {run['lag_at_close']:,.0f} events"
    return text + (f"; lost {run['lost']}" if run["lost"] else "")


def _paced_rows(r: dict) -> list[Row]:
    out: list[Row] = []
    nv, one, three = r["paced_naive"], r["paced_1"], r["paced_3"]
    for rate in sorted(run["paced_at"] for run in one["by_rate"]):
        a, n = paced_at(one, rate), paced_at(nv, rate)
        out.append(
            Row(
                "9",
                f"agent CPU per delivered event, paced {rate:g} ev/s, 1 sink",
                a["cpu_us_per_delivered"],
                "us",
                f"paced_{rate:g}_1",
                _window(a) + f"; {one['processes']} processes",
            )
        )
        out.append(
            Row(
                "9",
                f"naive peer CPU per delivered event, paced {rate:g} ev/s",
                n["cpu_us_per_delivered"],
                "us",
                f"paced_{rate:g}_naive",
                _window(n),
            )
        )
        out.append(
            Row(
                "9",
                f"  agent / naive peer, paced {rate:g} ev/s, 1 sink",
                _ratio(a["cpu_us_per_delivered"], n["cpu_us_per_delivered"]),
                "x",
                f"paced_{rate:g}_ratio",
                "(retired goal: <= 0.3x)" if rate == 200 else "",
            )
        )
    out += _floor_rows(r)
    for rate in sorted(run["paced_at"] for run in three["by_rate"]):
        t, a = paced_at(three, rate), paced_at(one, rate)
        out.append(
            Row(
                "10",
                f"agent CPU per journaled event, paced {rate:g} ev/s, 3 sinks",
                t["cpu_us_per_journaled"],
                "us",
                f"paced_{rate:g}_3",
                f"{t['cpu_us_per_delivered']:.0f} us per delivered event (x3)",
            )
        )
        out.append(
            Row(
                "10",
                f"  agent CPU, paced {rate:g} ev/s, 3 sinks",
                t["core_percent"],
                "% core",
                f"paced_{rate:g}_3_core",
                _window(t) + f"; {three['processes']} processes",
            )
        )
        out.append(
            Row(
                "10",
                f"  3 sinks / 1 sink, CPU per journaled event, paced {rate:g} ev/s",
                _ratio(t["cpu_us_per_journaled"], a["cpu_us_per_delivered"]),
                "x",
                f"paced_{rate:g}_3_ratio",
            )
        )
    i = r["idle"]
    out.append(
        Row(
            "11",
            f"agent idle, {i['sinks']} sinks, {i['seconds']:.0f} s",
            i["core_percent"],
            "% core",
            "idle_3",
            f"schedstat; utime+stime says {i['ticks_core_percent']:.2f}%; {i['processes']} processes",
        )
    )
    if "idle_console" in r:
        c = r["idle_console"]
        out.append(
            Row(
                "19",
                f"agent idle, {c['sinks']} sinks, console on, no browser",
                c["core_percent"],
                "% core",
                "idle_3_console",
                f"{c['processes']} processes",
            )
        )
        out.append(
            Row(
                "19",
                "  idle with console / without",
                _ratio(c["cpu_seconds"] / c["seconds"], i["cpu_seconds"] / i["seconds"]),
                "x",
                "idle_console_ratio",
            )
        )
    if "live_follow" in r:
        lf = r["live_follow"]
        for key, label in (("nobody", "nobody on Live"), ("one_browser", "one browser following Live")):
            out.append(
                Row(
                    "19",
                    f"agent + console CPU, paced {lf['rate']:g} ev/s, 1 sink, {label}",
                    lf[key]["core_percent"],
                    "% core",
                    f"live_{key}",
                    _window(lf[key]),
                )
            )
        out.append(
            Row(
                "19",
                "  one browser on Live costs (points of one core)",
                lf["extra_core_points"],
                "% core",
                "live_extra",
                f"{lf['followed']:,} POSTs streamed to it",
            )
        )
    return out + _ctl_rows(r) + _calls_rows(r)


def _calls_rows(r: dict) -> list[Row]:
    """The sink worker's Python calls per delivered event (tests/bench/calls_per_event.py)."""
    c = r.get("calls_per_event")
    if not c:  # results saved before the row existed
        return []
    return [
        Row(
            "20",
            f"sink worker Python calls per delivered event, paced {c['paced_at']:g} ev/s, 1 sink",
            c["calls_per_event"],
            "calls",
            "calls_per_event",
            f"{c['calls_in_window']:,} calls for {c['delivered_in_window']:,} events; goal <= 50",
        )
    ]


def _median_of(run: dict) -> str:
    """ "; median of 410 / 430 / 455 us" when the paced run is one of several alternated rounds."""
    values = run.get("runs") or []
    return "; median of " + " / ".join(f"{v:,.0f}" for v in values) + " us" if len(values) > 1 else ""


def _floor_rows(r: dict) -> list[Row]:
    """Row 9: the floor at 200 ev/s, and the agent (1 sink) and the naive peer as ratios against it."""
    if "paced_floor" not in r:  # results saved before the row existed
        return []
    f, a, n = paced_at(r["paced_floor"], 200), paced_at(r["paced_1"], 200), paced_at(r["paced_naive"], 200)
    return [
        Row(
            "9",
            "floor CPU per delivered event, paced 200 ev/s",
            f["cpu_us_per_delivered"],
            "us",
            "paced_200_floor",
            _window(f) + "; SUB + SQLite commit + PUB, SUB + pycurl: 2 processes" + _median_of(f),
        ),
        Row(
            "9",
            "  agent / floor, paced 200 ev/s, 1 sink",
            _ratio(a["cpu_us_per_delivered"], f["cpu_us_per_delivered"]),
            "x",
            "paced_200_floor_ratio",
            "goal <= 1.2x" + _median_of(a),
        ),
        Row(
            "9",
            "  naive peer / floor, paced 200 ev/s",
            _ratio(n["cpu_us_per_delivered"], f["cpu_us_per_delivered"]),
            "x",
            "paced_200_naive_floor_ratio",
            "informational" + _median_of(n),
        ),
    ]


def _ctl_rows(r: dict) -> list[Row]:
    """Row 12 (tests/bench/ctl_cost.py): eventsinkctl status as installed against curl --unix-socket, same
    agent, same run; pip's script in the same layout and the dev venv's script as information."""
    c = r.get("ctl_status")
    if not c:  # results saved before the row existed
        return []
    ctl, curl, py = c["ctl"], c["curl"], c["python"]
    out = [
        Row(
            "12",
            "eventsinkctl status (installed launcher), spawn to exit",
            ctl["median_ms"],
            "ms",
            "ctl_status",
            f"median of {c['runs']}; min {ctl['min_ms']:.1f}, max {ctl['max_ms']:.1f} ms",
        ),
        Row(
            "12",
            "curl --unix-socket .../v1/status, same socket",
            curl["median_ms"],
            "ms",
            "ctl_curl",
            f"median of {c['runs']}, alternating with eventsinkctl",
        ),
        Row(
            "12",
            "  python3 -IS -c pass, the launcher's Python's start",
            py["median_ms"],
            "ms",
            "ctl_python",
            "the floor of any client written in Python",
        ),
        Row("12", "  eventsinkctl status / curl", c["ratio"], "x", "ctl_status_ratio", "goal <= 3"),
    ]
    for key, label in (
        ("ctl_pip", "pip's console script, same installed layout"),
        ("ctl_dev", "the dev venv's console script (editable install)"),
    ):
        if key in c:  # results saved before these were timed have neither
            out.append(
                Row(
                    "12",
                    f"  eventsinkctl status, {label}",
                    c[key]["median_ms"],
                    "ms",
                    key,
                    f"informational; {c[key]['median_ms'] / curl['median_ms']:.2f}x curl",
                )
            )
    return out


def rows(r: dict) -> list[Row]:
    out: list[Row] = []
    c = r["ceiling"]
    out.append(
        Row(
            "1",
            "ceiling: wrk, 1 connection -> nginx",
            c["wrk_1"]["rps"],
            "req/s",
            "wrk_1",
            f"{c['wrk_1']['body_bytes']}-byte POST" + _runs(c["wrk_1"]),
            True,
        )
    )
    out.append(
        Row(
            "1",
            "ceiling: wrk, 32 connections -> nginx",
            c["wrk_32"]["rps"],
            "req/s",
            "wrk_32",
            f"{c['wrk_32']['threads']} threads" + _runs(c["wrk_32"]),
            True,
        )
    )
    cu = r["curl"]
    out.append(
        Row(
            "1",
            "ceiling: bare pycurl loop, 1 connection -> nginx",
            cu["rate"],
            "req/s",
            "curl_1",
            f"{cu['flat']['ok']:,} of {cu['flat']['requests']:,} POSTs 2xx, in order" + _runs(cu),
            True,
        )
    )
    out.append(
        Row(
            "1",
            f"  bare pycurl loop CPU per POST, paced {cu['paced']['paced_at']:g}/s",
            cu["paced"]["cpu_us_per_post"],
            "us",
            "curl_paced_cpu",
            f"{cu['paced']['requests']:,} POSTs; flat out {cu['flat']['cpu_us_per_post']:.0f} us",
        )
    )
    nv = r["naive"]
    out.append(
        Row(
            "2",
            "naive peer (zmq SUB + requests), same envelope -> nginx",
            nv["rate"],
            "ev/s",
            "naive",
            f"{nv['events']} events, lost {nv['lost']}" + _runs(nv),
            True,
        )
    )
    io = r["in_order"]
    out.append(
        Row(
            "3",
            "agent, max_in_flight=1 (in order) -> nginx",
            io["rate"],
            "ev/s",
            "in_order",
            f"{io['events']} events, lost {io['lost']}" + _runs(io),
            True,
        )
    )
    out.append(
        Row(
            "3",
            "  in order / wrk, 1 connection",
            _ratio(io["rate"], c["wrk_1"]["rps"]),
            "x",
            "ratio_in_order_wrk_1",
            "(retired goal: >= 0.4x)",
        )
    )
    lat = r["latency"]
    out.append(
        Row(
            "3",
            f"  latency p50, paced {lat['rate']:.0f} ev/s",
            lat["p50_ms"],
            "ms",
            "latency_p50",
            "receiver side: arrival - event time",
        )
    )
    out.append(
        Row(
            "3",
            f"  latency p99, paced {lat['rate']:.0f} ev/s",
            lat["p99_ms"],
            "ms",
            "latency_p99",
            f"max {lat['max_ms']:.1f} ms over {lat['events']} events",
        )
    )
    f = r["far"]
    out.append(
        Row(
            "4",
            f"agent, in order -> far receiver ({f['delay_ms']:.0f} ms)",
            f["in_order"]["rate"],
            "ev/s",
            "far_in_order",
            f"{f['in_order']['events']} events",
            True,
        )
    )
    out.append(
        Row(
            "4",
            f"agent, max_in_flight=8 -> far receiver ({f['delay_ms']:.0f} ms)",
            f["in_flight_8"]["rate"],
            "ev/s",
            "far_in_flight_8",
            f"{f['in_flight_8']['events']} events, {f['in_flight_8']['max_concurrent']} connections",
            True,
        )
    )
    b = r["bulk"]
    out.append(
        Row(
            "5",
            "agent, bulk of 100 -> nginx",
            b["rate"],
            "ev/s",
            "bulk",
            f"{b['events']} events in {b['requests']} POSTs, lost {b['lost']}" + _runs(b),
            True,
        )
    )
    out.append(
        Row(
            "5",
            "  bulk / in order",
            _ratio(b["rate"], io["rate"]),
            "x",
            "ratio_bulk_in_order",
            "(retired goal: >= 10x)",
        )
    )
    for key, how in (("broker", "Publisher"), ("broker_lean", "lean")):
        br = r[key]
        px = br["proxy"]
        out.append(
            Row(
                "6",
                f"broker alone, journaled/s, {br['publishers']} {how} publishers",
                br["rate"],
                "ev/s",
                key,
                f"lost {br.get('lost_worst', br['lost'])} of {br['events']} (journal rows)" + _runs(br),
                True,
            )
        )
        out.append(
            Row(
                "6",
                f"raw ZeroMQ proxy, the same {how} publishers",
                px["rate"],
                "ev/s",
                key + "_proxy",
                f"lost {px['lost']} of {px['events']}" + _runs(px),
                True,
            )
        )
        out.append(
            Row(
                "6",
                f"  broker / raw proxy, {how} publishers",
                _ratio(br["rate"], px["rate"]),
                "x",
                key + "_ratio",
                "(retired goal: >= 0.4x)",
            )
        )
    for key, what in (("drain_one", "one by one"), ("drain_bulk", "bulk of 100")):
        d = r[key]
        out.append(
            Row(
                "7",
                f"drain {d['events'] - 1:,} backlog, {what}",
                d["delivering_seconds"],
                "s",
                key,
                f"first to last 2xx; +{d['backoff_wait']:.2f} s backoff wait after nginx came up",
            )
        )
        out.append(Row("7", f"  drain rate, {what}", d["rate"], "ev/s", key + "_rate", _runs(d).lstrip("; "), True))
        rp = d.get("replay") or {}
        if rp:
            out.append(
                Row(
                    "7",
                    f"replay {rp['events'] - 1:,} retained events, {what}",
                    rp["delivering_seconds"],
                    "s",
                    key + "_replay",
                    f"first to last 2xx; {rp['seconds']:.2f} s from the request",
                )
            )
            out.append(
                Row(
                    "7",
                    f"  replay rate, {what}",
                    rp["rate"],
                    "ev/s",
                    key + "_replay_rate",
                    _runs(rp).lstrip("; "),
                    True,
                )
            )
    d = r["drain_one"]
    out.append(Row("8", f"worker RSS, backlog {d['rss_small_backlog']:,}", d["rss_small_kb"] / 1024, "MB", "rss_small"))
    out.append(
        Row(
            "8",
            f"worker RSS, backlog {d['rss_full_backlog']:,}",
            d["rss_full_kb"] / 1024,
            "MB",
            "rss_full",
            f"difference {(d['rss_full_kb'] - d['rss_small_kb']) / 1024:.1f} MB",
        )
    )
    out.append(
        Row(
            "8",
            "agent CPU per 10,000 events, in order",
            io["cpu_per_10k"],
            "s",
            "cpu_in_order",
            "supervisor + broker + worker, utime + stime",
        )
    )
    out.append(Row("8", "agent CPU per 10,000 events, bulk", b["cpu_per_10k"], "s", "cpu_bulk"))
    for shape, plain in (("in_order", io), ("bulk", b)):
        for option, what in (("gzip", 'compression = "gzip"'), ("h2", 'http_version = "2"')):
            row = r.get(f"{shape}_{option}")
            if row:  # results saved before these rows existed have none
                out.append(
                    Row(
                        "8",
                        f"agent CPU per 10,000 events, {shape.replace('_', ' ')}, {what}",
                        row["cpu_per_10k"],
                        "s",
                        f"cpu_{shape}_{option}",
                        f"{_ratio(row['cpu_per_10k'], plain['cpu_per_10k']):.2f}x HTTP/1.1 plain; "
                        f"{row['rate']:,.0f} ev/s",
                    )
                )
    out.append(Row("8", "naive peer CPU per 10,000 events", nv["cpu_per_10k"], "s", "cpu_naive"))
    out.append(
        Row(
            "8",
            "broker CPU per event in the burst",
            r["broker"]["cpu_us_per_event"],
            "us",
            "cpu_broker",
            "validate + journal + fan-out",
        )
    )
    pc = r["publisher_cost"]
    out.append(
        Row(
            "9",
            "Publisher cost per event: new vs old",
            pc["ratio"],
            "x",
            "publisher_cost_ratio",
            f"new {pc['new']['cpu_us_per_event']:.2f} us, old {pc['old']['cpu_us_per_event']:.2f} us "
            f"(publishing process CPU, median of {len(pc['new']['runs'])} runs of {pc['events']:,} events)",
        )
    )
    return out + _paced_rows(r)


@dataclass
class Goal:
    what: str
    figure: float  # what was measured (a ratio, %, s, MB or a count)
    op: str  # "<=", "<" or ">="
    bound: float
    met: bool
    detail: str


def _goal(what: str, figure: float, op: str, bound: float, detail: str) -> Goal:
    met = {"<=": figure <= bound, "<": figure < bound, ">=": figure >= bound}[op]
    return Goal(what, figure, op, bound, met, detail)


def goals(r: dict) -> list[Goal]:
    """The idle-cost goals, the Publisher's cost, the floor and eventsinkctl's start, each from this run."""
    agent_200, floor_200 = paced_at(r["paced_1"], 200), paced_at(r["paced_floor"], 200)
    three_200, idle = paced_at(r["paced_3"], 200), r["idle"]
    a_us, f_us = agent_200["cpu_us_per_delivered"], floor_200["cpu_us_per_delivered"]
    io, nv, curl = r["in_order"]["rate"], r["naive"]["rate"], r["curl"]["rate"]
    far_1, far_8 = r["far"]["in_order"]["rate"], r["far"]["in_flight_8"]["rate"]
    d1, db = r["drain_one"], r["drain_bulk"]
    bursts = (r["broker"], r["broker_lean"])
    lost = max(b.get("lost_worst", b["lost"]) for b in bursts) + max(0, d1["lost"]) + max(0, db["lost"])
    lost += sum(max(0, d["replay"]["lost"]) for d in (d1, db) if d.get("replay"))
    rss = (d1["rss_full_kb"] - d1["rss_small_kb"]) / 1024
    p99 = r["latency"]["p99_ms"]
    return [
        _goal(
            "paced 200 ev/s, 1 sink: agent / floor, CPU per event",
            _ratio(a_us, f_us),
            "<=",
            1.2,
            f"{a_us:,.0f} / {f_us:,.0f} us per delivered event, medians of alternated runs",
        ),
        _goal(
            "paced 200 ev/s, 3 sinks: agent, % of one core",
            three_200["core_percent"],
            "<=",
            15,
            f"{three_200['cpu_us_per_journaled']:,.0f} us per journaled event",
        ),
        _goal(
            f"idle, {idle['sinks']} sinks: agent, % of one core",
            idle["core_percent"],
            "<=",
            0.3,
            f"over {idle['seconds']:.0f} s, {idle['processes']} processes",
        ),
        _goal(
            "in order / bare pycurl loop, 1 connection", _ratio(io, curl), ">=", 0.5, f"{io:,.0f} / {curl:,.0f} ev/s"
        ),
        _goal("in order / naive peer", _ratio(io, nv), ">=", 2.5, f"{io:,.0f} / {nv:,.0f} ev/s"),
        _goal(
            f"max_in_flight=8 / in order (far receiver, {r['far']['delay_ms']:.0f} ms)",
            _ratio(far_8, far_1),
            ">=",
            6,
            f"{far_8:,.0f} / {far_1:,.0f} ev/s",
        ),
        _goal(
            f"drain {d1['events'] - 1:,} backlog one by one, s",
            d1["delivering_seconds"],
            "<",
            60,
            f"{d1['seconds']:.1f} s counting the backoff wait",
        ),
        _goal(
            f"drain {db['events'] - 1:,} backlog in bulk, s",
            db["delivering_seconds"],
            "<",
            10,
            f"{db['seconds']:.1f} s counting the backoff wait",
        ),
        *(
            _goal(
                f"replay / drain rate, {what}",
                _ratio(d["replay"]["rate"], d["rate"]),
                ">=",
                0.9,
                f"{d['replay']['rate']:,.0f} / {d['rate']:,.0f} ev/s",
            )
            for d, what in ((d1, "one by one"), (db, "in bulk"))
            if d.get("replay")
        ),
        _goal(
            f"p99 publish-to-2xx at {r['latency']['rate']:.0f} ev/s, ms",
            p99,
            "<",
            10,
            f"p50 {r['latency']['p50_ms']:.2f} ms",
        ),
        _goal(
            f"worker RSS growth, backlog {d1['rss_small_backlog']:,} -> {d1['rss_full_backlog']:,}, MB",
            rss,
            "<",
            10,
            f"{d1['rss_small_kb'] / 1024:.1f} -> {d1['rss_full_kb'] / 1024:.1f} MB",
        ),
        _goal(
            "Publisher cost within 20% of today's (new / old)",
            r["publisher_cost"]["ratio"],
            "<=",
            1.2,
            f"{r['publisher_cost']['new']['cpu_us_per_event']:.2f} / "
            f"{r['publisher_cost']['old']['cpu_us_per_event']:.2f} us per event",
        ),
        _goal(
            "lost events (broker bursts worst run + drains)",
            float(lost),
            "<=",
            0,
            f"of {r['broker']['events']:,} per burst and {d1['events'] - 1:,} per drain",
        ),
        *console_goals(r),
        *(
            [
                _goal(
                    "eventsinkctl status / curl --unix-socket, same socket",
                    c["ratio"],
                    "<=",
                    3,
                    f"{c['ctl']['median_ms']:.1f} / {c['curl']['median_ms']:.1f} ms, medians of {c['runs']}",
                )
            ]
            if (c := r.get("ctl_status"))
            else []
        ),
        *(
            [
                _goal(
                    f"sink worker Python calls per event, paced {k['paced_at']:g} ev/s, 1 sink",
                    k["calls_per_event"],
                    "<=",
                    50,
                    f"{k['calls_in_window']:,} calls / {k['delivered_in_window']:,} events",
                )
            ]
            if (k := r.get("calls_per_event"))
            else []
        ),
    ]


def console_goals(r: dict) -> list[Goal]:
    """The console's two goals: the console idle, and one browser following Live."""
    out = []
    if "idle_console" in r:
        c, i = r["idle_console"], r["idle"]
        on, off = c["cpu_seconds"] / c["seconds"], i["cpu_seconds"] / i["seconds"]
        out.append(
            _goal(
                "idle, 3 sinks: console on, no browser / console off, CPU",
                _ratio(on, off),
                "<=",
                1.1,
                f"{c['core_percent']:.3f}% / {i['core_percent']:.3f}% of one core",
            )
        )
    if "live_follow" in r:
        lf = r["live_follow"]
        out.append(
            _goal(
                f"paced {lf['rate']:g} ev/s: one browser on Live, extra % of one core",
                lf["extra_core_points"],
                "<=",
                5,
                f"{lf['one_browser']['core_percent']:.1f}% vs {lf['nobody']['core_percent']:.1f}%",
            )
        )
    return out


def render(r: dict, last: dict | None = None) -> str:
    previous = {row["key"]: row["value"] for row in (last or {}).get("table", [])}
    table = rows(r)
    lines = [
        f"eventsink-agent bench, {r['when']} ({r['cpus']} CPUs, load {r['load']}); sizes: {r['sizes_name']}",
        "Publisher = bus.publisher.Publisher (the shipped client); lean = raw ZeroMQ sends (tests/bench/loadgen.py)",
        "",
    ]
    head = f"{'row':<4}{'measurement':<58}{'value':>16}{'vs last':>9}  notes"
    lines += [head, "-" * len(head)]
    for row in table:
        before = previous.get(row.key)
        vs = f"{row.value / before:.2f}x" if before else "-"
        lines.append(f"{row.row:<4}{row.what:<58}{_fmt(row.value, row.unit):>16}{vs:>9}  {row.note}")
    lines += [
        "",
        "goals (the idle and Publisher costs; eventsinkctl's start):",
        f"{'goal':<62}{'measured':>10}{'bound':>9}  result",
    ]
    for goal in goals(r):
        lines.append(
            f"{goal.what:<62}{goal.figure:>10.2f}{goal.op + ' ' + format(goal.bound, 'g'):>9}  "
            f"{'MET' if goal.met else 'MISSED'}  ({goal.detail})"
        )
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
    for bar, row in zip(bars, data, strict=True):
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
