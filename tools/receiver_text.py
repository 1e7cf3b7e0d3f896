"""What the test receiver prints: one line per event (time, count, seq, event,
who it is about, flags) and the summary at the end of `eventsink-agent receive`."""

from __future__ import annotations

import datetime
from typing import Any


def clock() -> str:
    return datetime.datetime.now().strftime("%H:%M:%S.%f")[:-3]


def describe(ev: dict) -> str:
    """The readable part of an event line: which conference or participant it is about."""
    data = ev.get("data")
    if not isinstance(data, dict):
        return ""
    name = ev.get("event", "")
    if str(name).startswith("eventsink_"):
        return ""
    if str(name).startswith("conference_"):
        text = str(data.get("name", "?"))
        if data.get("service_type"):
            text += f" [{data['service_type']}]"
        return text
    uuid = data.get("uuid", "?")
    if name == "participant_media_stream_window":
        return f"({uuid}) quality {data.get('call_quality_was', '?')} -> {data.get('call_quality_now', '?')}"
    if name == "participant_media_streams_destroyed":
        streams = data.get("media_streams")
        return f"({uuid}) {len(streams) if isinstance(streams, list) else 0} media streams"
    text = f"{data['conference']} " if data.get("conference") else ""
    text += f"({data.get('display_name') or '?'} / {uuid})"
    if name == "participant_disconnected" and data.get("disconnect_reason"):
        text += f" {data['disconnect_reason']}"
    if isinstance(data.get("media_streams"), list):
        text += f" +{len(data['media_streams'])} media streams"
    return text


def event_line(count: int, ev: dict, flags: list[str]) -> str:
    parts = [clock(), f"#{count}", f"seq={ev.get('seq')}", str(ev.get("event")), describe(ev)]
    line = " ".join(p for p in parts if p)
    if flags:
        line += " " + " ".join(f"[{f}]" for f in flags)
    return line


def format_summary(summary: dict[str, Any]) -> str:
    lines = [f"received {summary['events']} events in {summary['requests']} requests"]
    for name, n in sorted(summary["by_event"].items()):
        lines.append(f"  {name:<38} {n}")
    lines.append(
        f"gaps {summary['gaps']} (missing {summary['missing']}), resets {summary['resets']}, "
        f"out of order {summary['out_of_order']}, duplicates {summary['duplicates']}, "
        f"auth failures {summary['auth_failures']}, bad signatures {summary['bad_signatures']}, "
        f"bad requests {summary['bad_requests']}, refused TLS handshakes {summary['tls_refused']}"
    )
    return "\n".join(lines)
