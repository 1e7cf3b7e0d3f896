"""`Post`: one POST a sink sends, and what it stands for.

Owns the one value every stage of a worker's pipeline hands on (shaper, batcher,
envelope book, dispatcher, HTTP client, acknowledger), so delivery does not depend
on shaping.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Post:
    """One POST: its body and what it stands for."""

    seq: int  # the seq of its (first) envelope: retries go oldest first
    event: str
    body: bytes
    webhook_id: str
    offsets: tuple[int, ...]  # journal offsets done once it is delivered
    times: tuple[float, ...]  # publish time of each event inside (event_age)
    entered: float = 0.0  # monotonic time it entered the send order
    strikes: int = 0  # answers in a row with a dead-letter status (sinks/dead_letters.py)
    dead_letter: int = 0  # a redriven dead letter: its journal offset (0: not one)
    parts: tuple[Post, ...] = ()  # a bulk envelope: the Posts inside (to split it)

    @property
    def count(self) -> int:
        """Events inside (a bulk counts each inner envelope)."""
        return len(self.times)
