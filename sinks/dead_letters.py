"""One worker's dead letters (docs/delivery.md, `dead_letter_after`): the strikes
an event collects, setting it aside, and sending redriven ones again.

`DeadLetters.judge` is the dispatcher's word on a failed POST (sinks/delivery.py
asks it before queueing the retry):
- an answer whose status is not in `dead_letter_statuses` (a 500, a timeout, a
  401) resets the event's strikes: the sink retries it with backoff, as always;
- a bulk envelope of several events answered with such a status is split in
  halves (each re-wrapped with the inner events' own seqs) and both are retried,
  recursively, so the one event the receiver refuses ends alone in an envelope
  before anything gets a strike. 413 (too large) is the case the contract
  names; any other poison status is hunted down the same way, since the
  receiver's answer does not say which inner event it refused. The halves go
  out without a backoff wait (the receiver answered: this is about the
  envelope, not an outage), so finding one event in 100 takes 7 POSTs, not
  minutes of doubling waits. A half is an envelope of its own (its id: its
  first event's + its count): on a bulk sink the halves' records replace the
  refused envelope's before they go out (`on_split`, sinks/envelope_book.py),
  so a redelivery re-forms the halves, never the refused whole; a journal that
  refuses the records leaves the whole to be retried as it is;
- a single event answered so for the `dead_letter_after`-th time in a row is
  set aside: written to the journal's dead-letter table (bus/journal.py) with
  the envelope as sent, the status and up to 200 characters of the answer,
  logged on support.events, counted, and judged done (nothing to retry): the
  dispatcher hands it to the worker's acknowledger, so its journal offsets are
  done (the cursor moves on; its seq stays used). Only once the row is written: a
  journal that refuses it leaves the event to be retried.
Setting an event aside does not touch the backoff (only a success resets it),
so a receiver that refuses everything still ends in the Maximum Backoff alarm.

Redriven dead letters (marked by the supervisor, agent/commands/dead_letters.py)
are read when the worker starts and sent first; a delivered one is deleted.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable

from common.config_types import SinkConfig
from common.logs import SUPPORT
from sinks.http import Result
from sinks.post import Post
from sinks.shaping import Shaper, wrap

log = logging.getLogger("sinks.worker")
support = logging.getLogger(SUPPORT)

ANSWER_SHOWN = 200  # characters of the receiver's answer kept with a dead letter
LIFECYCLE_KEY_BASE = 1 << 62  # a lifecycle event's key: microseconds minus this, < 0 and in time order


class DeadLetters:
    """The dead letters of one sink's worker (its own journal connection does the writing)."""

    def __init__(self, sink: SinkConfig, reader):
        self.name = sink.name
        self.reader = reader  # bus.journal.JournalReader: accepted_at, set_aside, redrive_rows, forget_dead_letter
        self.configure(sink)
        self.set_aside = 0  # events set aside by this worker (eventsink_dead_letters_total)
        self.redriven = 0  # redriven dead letters delivered by this worker
        self.redriving = 0  # redriven ones not delivered yet (0: delivered Posts need no look)
        # (whole, halves) -> False when the halves cannot go out (their records not written)
        self.on_split: Callable[[Post, tuple[Post, ...]], bool] | None = None

    def configure(self, sink: SinkConfig) -> None:
        self.after = sink.dead_letter_after
        self.statuses = frozenset(sink.dead_letter_statuses)
        self.version = sink.version

    # ------------------------------------------------------------ judging a failure

    def judge(self, post: Post, result: Result) -> tuple[Post, ...]:
        """What to retry after POST failed with RESULT: itself, its two halves, or nothing (set aside)."""
        if self.after <= 0 or result.status not in self.statuses:
            post.strikes = 0
            return (post,)
        if len(post.parts) > 1:
            half = len(post.parts) // 2
            halves = (wrap(list(post.parts[:half]), self.version), wrap(list(post.parts[half:]), self.version))
            if self.on_split is not None and not self.on_split(post, halves):
                post.strikes = 0
                return (post,)
            return halves
        post.strikes += 1
        if post.strikes < self.after or not self._set_aside(post, result):
            return (post,)
        return ()  # set aside: the dispatcher hands it to the acknowledger (its offsets are done)

    def _set_aside(self, post: Post, result: Result) -> bool:
        single = post.parts[0] if post.parts else post
        offset = single.dead_letter or (single.offsets[0] if single.offsets else 0)
        if offset:
            accepted = self.reader.accepted_at(offset) if offset > 0 else None
        else:
            # An agent-made lifecycle event (eventsink_started, ...) has no journal row: it is kept under
            # a key of its own, below every offset, so that a receiver refusing everything still gets past it.
            offset, accepted = time.time_ns() // 1000 - LIFECYCLE_KEY_BASE, time.time()
        answer = result.answer.decode("utf-8", "replace")
        answer = " ".join(answer.split())[:ANSWER_SHOWN]
        detail = f"{result.detail}: {answer}" if answer else result.detail
        try:
            self.reader.set_aside(
                offset,
                single.event,
                single.body,
                accepted,
                single.webhook_id,
                single.event,
                post.strikes,
                result.status,
                detail,
            )
        except sqlite3.Error as exc:
            log.warning("sink %s: cannot set event %s aside (retrying it): %s", self.name, single.webhook_id, exc)
            return False
        self.set_aside += 1
        if single.dead_letter:  # a redriven one, set aside again: its row is back (the journal replaced it)
            self.redriving -= 1
        support.warning(
            "sink %s: event %s (%s, webhook-id %s) set aside as a dead letter after %d answers of HTTP %s: %s",
            self.name,
            offset,
            single.event,
            single.webhook_id,
            post.strikes,
            result.status,
            answer or "no answer body",
        )
        return True

    # ------------------------------------------------------------ redrive

    def redriven_posts(self, shaper: Shaper, now: float) -> list[Post]:
        """The dead letters marked for redrive, in their original order, as Posts under new seqs."""
        try:
            rows = self.reader.redrive_rows()
        except sqlite3.Error as exc:
            log.warning("sink %s: cannot read the dead letters to redrive (they stay marked): %s", self.name, exc)
            return []
        posts = [shaper.redriven(offset, body, webhook_id, now) for offset, _topic, body, webhook_id in rows]
        self.redriving += len(posts)
        if posts:
            log.info("sink %s: sending %d redriven dead letters first", self.name, len(posts))
        return posts

    def delivered(self, post: Post) -> None:
        """POST was acknowledged: a redriven dead letter inside it is no longer held."""
        for single in post.parts or (post,):
            if single.dead_letter:
                self.redriving -= 1
                try:
                    self.reader.forget_dead_letter(single.dead_letter)
                    self.redriven += 1
                except sqlite3.Error as exc:
                    log.warning("sink %s: a redriven dead letter was delivered but stays listed: %s", self.name, exc)
