"""Points in time as operators write them (docs/commands.md and docs/control-api.md, `replay --since`).

Owns `parse_time`: Unix seconds (a number, or a string of one), ISO 8601
(`2026-12-01T08:00:00Z`, with an offset, or without one: then UTC), or an age
back from now (`90s`, `30m`, `2h`, `1d`, also combined: `1h30m`); and
`iso_utc`, the one way the control API writes a time. Every refusal is a
ValueError with one plain sentence naming what was given.
"""

from __future__ import annotations

import datetime
import math
import re

_AGE_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_AGE = re.compile(r"^(?:\d+(?:\.\d+)?[smhd])+$")
_UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_YEAR_10000 = 253402300800.0  # Unix seconds: datetime cannot go further
_EXAMPLES = "Unix seconds, ISO 8601 such as 2026-12-01T08:00:00Z, or an age such as 90s, 30m, 2h, 1d"


def parse_time(value: object, now: float) -> float:
    """VALUE as Unix seconds; an age counts back from NOW (Unix seconds). ValueError when unusable."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"TIME must be {_EXAMPLES} (got {type(value).__name__})")
    if isinstance(value, (int, float)):
        return _checked(float(value), value)
    text = value.strip()
    shown = repr(text[:40])
    if not text:
        raise ValueError(f"TIME must be {_EXAMPLES} (got an empty string)")
    if _AGE.match(text.lower()):
        age = sum(float(n) * _UNIT_SECONDS[u] for n, u in _AGE_PART.findall(text.lower()))
        return _checked(now - age, text)
    try:
        return _checked(float(text), text)
    except ValueError:
        pass
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"TIME must be {_EXAMPLES} (got {shown})") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return _checked(moment.timestamp(), text)


def _checked(seconds: float, given: object) -> float:
    if not math.isfinite(seconds) or not 0 <= seconds < _YEAR_10000:
        raise ValueError(f"TIME must be a moment between 1970 and the year 9999 (got {str(given)[:40]!r})")
    return seconds


def iso_utc(wall: float) -> str:
    """Unix time as ISO 8601 UTC, e.g. '2024-05-01T12:00:00.250Z'."""
    stamp = datetime.datetime.fromtimestamp(wall, tz=datetime.UTC)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")
