"""The registry of active alarms: at most one alarm of a given name per sink
(`sink` None for node-wide alarms such as the journal being full), each with
the time it was raised (ISO 8601 UTC) and a detail line for operators."""

from __future__ import annotations

from dataclasses import dataclass

from common.timespec import iso_utc  # alarms are stamped with it; callers import it here


@dataclass(frozen=True)
class Alarm:
    name: str
    sink: str | None
    raised_at: str  # ISO 8601 UTC
    detail: str

    def as_dict(self) -> dict:
        return {"name": self.name, "sink": self.sink, "raised_at": self.raised_at, "detail": self.detail}


class AlarmRegistry:
    """Active alarms keyed by (name, sink); raising an active alarm again changes nothing."""

    def __init__(self) -> None:
        self._active: dict[tuple[str, str | None], Alarm] = {}

    def raise_alarm(self, name: str, sink: str | None, detail: str, *, wall: float) -> Alarm | None:
        """Raise NAME for SINK; returns the new Alarm, or None when it was already active."""
        key = (name, sink)
        if key in self._active:
            return None
        alarm = Alarm(name, sink, iso_utc(wall), detail)
        self._active[key] = alarm
        return alarm

    def clear(self, name: str, sink: str | None) -> Alarm | None:
        """Clear one alarm; returns it, or None when it was not active."""
        return self._active.pop((name, sink), None)

    def clear_sink(self, sink: str) -> list[Alarm]:
        """Clear every alarm of SINK; returns those cleared."""
        cleared = [a for (n, s), a in self._active.items() if s == sink]
        for a in cleared:
            del self._active[(a.name, a.sink)]
        return cleared

    def is_active(self, name: str, sink: str | None) -> bool:
        return (name, sink) in self._active

    def for_sink(self, sink: str | None) -> list[Alarm]:
        return [a for a in self._active.values() if a.sink == sink]

    def active(self) -> list[Alarm]:
        """Every active alarm, oldest first."""
        return list(self._active.values())

    def __len__(self) -> int:
        return len(self._active)
