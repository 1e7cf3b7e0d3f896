"""The alarm rules: from a child's report to the alarms that must be raised or
cleared. Pure functions; the supervisor acts on what they decide.

- A worker reporting `publisher == "backoff_exceeded"` (its next retry wait
  would exceed `max_retry_backoff`) -> Eventsink Reached Maximum Backoff.
- A worker whose backlog is above `tuning.max_background_posts` ->
  Eventsink Reached Maximum Concurrent POSTs. The rule is *armed* only once
  the backlog has been at or below the limit since the publisher started, so
  an operator's restart can drain a backlog that built up while the publisher
  was stopped, instead of tripping the same alarm on its first report.
- The broker reporting `journal_full` -> Eventsink Journal Full (node-wide),
  cleared when it reports the journal no longer full.
"""

from __future__ import annotations

from dataclasses import dataclass

from common.vocabulary import AlarmName, PublisherState


@dataclass(frozen=True)
class Decision:
    name: str
    detail: str


def backlog_arms(backlog: int, max_background_posts: int) -> bool:
    """True when BACKLOG is within the limit: from then on the concurrency rule may fire."""
    return backlog <= max_background_posts


def sink_alarms(
    *,
    publisher: str,
    backlog: int,
    next_backoff: float,
    max_retry_backoff: float,
    max_background_posts: int,
    backlog_armed: bool,
) -> list[Decision]:
    """The sink alarms a worker report calls for (already-active ones are the registry's business)."""
    out: list[Decision] = []
    if publisher == PublisherState.BACKOFF_EXCEEDED:
        out.append(
            Decision(
                AlarmName.MAX_BACKOFF,
                f"the next retry wait ({next_backoff:g} s) would exceed max_retry_backoff ({max_retry_backoff:g} s)",
            )
        )
    if backlog_armed and backlog > max_background_posts:
        out.append(
            Decision(
                AlarmName.MAX_CONCURRENT_POSTS,
                f"{backlog} events waiting, above max_background_posts ({max_background_posts})",
            )
        )
    return out


def journal_alarm(*, journal_full: bool, journal_bytes: int, max_journal_mb: float) -> Decision | None:
    """The node-wide alarm the broker's report calls for; None means: clear it."""
    if not journal_full:
        return None
    return Decision(
        AlarmName.JOURNAL_FULL,
        f"the journal cannot grow ({journal_bytes / 1048576:.1f} MiB on disk, max_journal_mb {max_journal_mb:g}, "
        "or the disk is full); new events are rejected, accepted ones are kept",
    )
