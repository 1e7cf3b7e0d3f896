"""The pieces eventsinkctl renders answers with: cells, durations, times,
totals and plain-text tables. Each command's own renderer is next to it in
agent/commands/ (one description per command)."""

from __future__ import annotations

import time

TYPE_CHECKING = False  # typing only for type checkers: eventsinkctl starts without it (agent/commands/__init__.py)
if TYPE_CHECKING:
    from typing import Any


def cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def format_seconds(value: Any) -> str:
    """A backoff or duration: '-' when zero or absent, else '45s', '2m30s', '1h5m'."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
        return "-"
    if value < 10:
        return f"{value:.3g}s"
    secs = int(round(value))
    h, rest = divmod(secs, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}h{m}m" if m else f"{h}h"
    if m:
        return f"{m}m{s}s" if s else f"{m}m"
    return f"{s}s"


def format_post_duration(value: Any) -> str:
    """One POST's duration (attempts, deliveries): '12.3ms' below a second, else '1.25s'."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return cell(value)
    return f"{value * 1000:.1f}ms" if value < 1 else f"{value:.2f}s"


def format_time(value: Any) -> str:
    """A point in time: unix seconds shown in local time; strings (ISO 8601) as given."""
    if value is None or value == "" or value == 0:
        return "-"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            # time, not datetime: eventsinkctl starts without importing datetime (agent/client/ctl.py)
            return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))
        except (OverflowError, OSError, ValueError):
            return str(value)
    return str(value)


def total(value: Any) -> str:
    """A scalar as a cell; a {reason: count} map as its total."""
    if isinstance(value, dict):
        nums = [v for v in value.values() if isinstance(v, (int, float)) and not isinstance(v, bool)]
        return cell(sum(nums)) if len(nums) == len(value) else "-"
    return cell(value)


def alarm_names(alarms: Any) -> str:
    if not alarms:
        return "-"
    if not isinstance(alarms, list):
        return cell(alarms)
    names = [a.get("name", "?") if isinstance(a, dict) else str(a) for a in alarms]
    return ", ".join(names)


def table(headers: list[str], rows: list[list[str]]) -> str:
    """Left-aligned columns, two spaces apart; the last column is not padded."""
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    lines = []
    for r in [headers, *rows]:
        cells = [c.ljust(w) for c, w in zip(r[:-1], widths[:-1], strict=False)] + [r[-1]]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def one_field(key: str, done: str, empty: str):
    """A renderer for an answer that is one field: DONE with the value of KEY in it ({}), or EMPTY
    when the answer has no such value (restart, redrive, discard)."""

    def render(body: Any) -> str:
        value = body.get(key) if isinstance(body, dict) else None
        return done.format(value) if value else empty

    return render


def list_table(body: Any, empty: str, columns: list[str], row) -> str:
    """An answer that is a list of objects as a table, ROW(object) giving each line's cells; EMPTY
    for an empty list (alarms, attempts, dead letters)."""
    if not body:
        return empty
    if not isinstance(body, list):
        return cell(body)
    return table(columns, [row(item) for item in body if isinstance(item, dict)])
