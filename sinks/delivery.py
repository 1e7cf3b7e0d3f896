"""Delivery: a sink's send order, its backoff, and the POSTs it starts on libcurl.

Owns `Dispatcher` (the send queue, at most `max_in_flight` POSTs under way on
the sink's `HttpClient` (sinks/http.py), the sink's backoff with one probe per
wait; what the attempts add up to is `counts`, sinks/delivery_counts.py, the client
swap while POSTs are under way is `ClientSlot` here). Everything runs on the worker's one thread:
`pump` starts what the policy allows (and asks `wake_at` for the end of a wait),
`collect` accounts for what libcurl finished and hands every Post that is done
(delivered or set aside) to `on_done(post, result)`, once. `pump`, `collect` and
`finish` take an explicit clock value, so the policy is tested without a real clock.

Backoff belongs to the sink: after a failure nothing is sent for the current
wait, then the oldest undelivered Post goes alone as a probe; each failure of a
request started since the last failure doubles the wait (failures of requests
already in flight do not), a 429/503 `Retry-After` sets a floor, a success
resets it, and a wait above the maximum stops sending (`backoff_exceeded`).

Pacing (`max_rate` events/s, 0 = none): no POST starts before the previous
start plus its events / max_rate (a bulk envelope counts its inner events,
a retry counts like any POST: it is what the receiver sees). The end of that
spacing goes to `wake_at` (a timer of the worker's loop), so the worker sleeps until then.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace

from common.backoff import Backoff
from common.logs import SUPPORT
from common.vocabulary import PublisherState
from sinks.delivery_counts import DeliveryCounts, FailureLog
from sinks.http import HttpClient, Result, Timeouts
from sinks.post import Post

support_log = logging.getLogger(SUPPORT)


class ClientSlot:
    """The sink's HTTP client, and the one with new settings that takes over once no POST is under way
    on the old (a POST keeps the client it started on)."""

    def __init__(self, client: HttpClient):
        self.current = client
        self.waiting: HttpClient | None = None

    def offer(self, client: HttpClient) -> None:
        if self.waiting is not None:  # superseded before it took over
            self.waiting.close()
        self.waiting = client

    def swap(self) -> None:
        old, self.current, self.waiting = self.current, self.waiting, None
        old.close()

    def close(self) -> None:
        """Close both (POSTs still under way end without a result: they stay in the journal)."""
        for client in (self.current, self.waiting):
            if client is not None:
                client.close()


@dataclass(frozen=True, slots=True)
class Attempt:
    post: Post
    generation: int  # the backoff generation it started in
    probe: bool


class Dispatcher:
    """The send order of one sink, its POSTs under way and its backoff.

    `put` appends Posts in send order; `pump` starts the oldest eligible ones
    on the client (as many as `limit` and the backoff allow), `collect` hands
    libcurl's results to `finish`.
    """

    def __init__(
        self,
        sink: str,
        client: HttpClient,
        backoff: Backoff,
        limit: int,
        on_state_change: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_rate: float = 0.0,
        judge: Callable[[Post, Result], tuple[Post, ...]] | None = None,
        on_done: Callable[[Post, Result], None] | None = None,
        wake_at: Callable[[float], None] | None = None,
    ):
        self.sink = sink
        # Exactly once per Post: delivered, or set aside by `judge` (the worker's acknowledger).
        self._on_done = on_done or (lambda post, result: None)
        self.wake_at = wake_at  # pump() has something to start then (a backoff wait, pacing)
        # A failed Post -> what to retry (sinks/dead_letters.py: itself, its halves, or nothing).
        self.judge = judge or (lambda post, result: (post,))
        self.clients = ClientSlot(client)
        self.backoff = backoff
        self.limit = max(1, limit)
        self.state = PublisherState.RUNNING
        self._exceeded_wait: float | None = None  # the wait that stopped sending (PublisherState.BACKOFF_EXCEEDED)
        self.counts = DeliveryCounts()  # what `snapshot` reports, and the rings of recent and sent POSTs
        self.failure_log = FailureLog(sink)
        self._on_state_change = on_state_change
        self._clock = clock
        self._queue: deque[Post] = deque()
        self.put: Callable[[Post], None] = self._queue.append  # appends Posts in send order (no Python frame)
        self.highest_sent_seq = 0  # the last seq put on the wire (a bulk Post carries len(times) seqs)
        self.highest_acked_seq = 0  # the last seq a 2xx acknowledged
        self._retry: list[tuple[int, int, Post]] = []  # heap: oldest seq first
        self._tiebreak = itertools.count()
        self._in_flight = 0
        self._probing = False  # after a failure: one attempt at a time until a success
        self._probe_in_flight = False
        self._resume_at = 0.0
        self._generation = 0
        self._closed = False
        self.max_rate = max_rate
        self._paced_until = 0.0  # max_rate: no POST starts before this

    # ------------------------------------------------------------ the worker's side

    @property
    def queued(self) -> int:
        return len(self._queue) + len(self._retry)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def client(self) -> HttpClient:
        """The client of the current settings (the one waiting to take over, if any)."""
        return self.clients.waiting or self.clients.current

    def configure(
        self, limit: int, initial: float, maximum: float, client: HttpClient | None = None, max_rate: float = 0.0
    ) -> None:
        """New settings, live: concurrency, backoff bounds (failures so far kept), pacing, maybe a new
        client (it takes over once the POSTs under way on the old one have ended)."""
        self.limit = max(1, limit)
        self.max_rate = max_rate
        self.backoff = replace(self.backoff, initial=initial, maximum=maximum)
        if client is not None:
            self.clients.offer(client)
            if self._in_flight == 0:
                self.clients.swap()

    def pause(self) -> int:
        """Stop sending and forget what is queued (it stays in the journal); returns how many Posts were dropped."""
        dropped = len(self._queue) + len(self._retry)
        self._queue.clear()
        self._retry.clear()
        self._set_state(PublisherState.PAUSED)
        return dropped

    def close(self) -> None:
        """No further attempts start."""
        self._closed = True

    def last_seq_out(self) -> int:
        """The seq a receiver may have seen last: the last acknowledged one, or, while a POST
        is still under way (it may yet arrive), the last one sent."""
        return self.highest_sent_seq if self._in_flight else self.highest_acked_seq

    def send_once(self, post: Post, timeouts: Timeouts) -> Result:
        """One attempt outside the queue and the backoff (the stop event at shutdown)."""
        result = self.clients.current.post(post.body, post.webhook_id, timeouts)
        self.counts.count(post, result)
        if result.ok:
            self._on_done(post, result)
        return result

    @property
    def next_backoff(self) -> float:
        """The next retry wait: the one the next failure would impose, or, once sending stopped
        because a wait exceeded max_retry_backoff, that wait (the figure the stop was logged
        with, and the one the supervisor's Maximum Backoff alarm quotes)."""
        return self._exceeded_wait if self._exceeded_wait is not None else self.backoff.next

    def snapshot(self) -> dict:
        waiting = self.backoff.current if self.backoff.failures else 0.0
        return {
            "in_flight": self._in_flight,
            "current_backoff": waiting,
            "next_backoff": self.next_backoff,
            **self.counts.snapshot(),
        }

    def pump(self, now: float) -> int:
        """Start every POST the policy allows at NOW; returns how many started."""
        started = kicked = 0
        client = self.clients.current
        wait = None
        while True:
            while self._queue or self._retry:  # nothing queued: no policy to ask
                wait = self._wait_needed(now)
                if wait != 0.0:
                    break
                attempt = self._grant(now)
                client.start(attempt.post.body, attempt.post.webhook_id, attempt, now)
                started += 1
            else:
                wait = None
            if started == kicked:
                break
            kicked = started  # the requests leave now, not one poll later
            client.started()
            if not self.collect(now):  # a POST can end as it starts (a refused scheme, a fast answer)
                break  # nothing changed: WAIT still holds
        if wait and self.wake_at is not None:
            self.wake_at(now + wait)
        return started

    def collect(self, now: float) -> int:
        """Account for the POSTs libcurl finished; returns how many."""
        client = self.clients.current
        done = client.done
        if not done:
            return 0
        client.done = []
        for attempt, result in done:
            self.finish(attempt, result, now)
        if self.clients.waiting is not None and self._in_flight == 0:
            self.clients.swap()
        return len(done)

    def wait_idle(self, timeout: float) -> bool:
        """Drive the POSTs under way until none is left (True) or TIMEOUT passes (False)."""
        deadline = self._clock() + timeout
        while self._in_flight:
            now = self._clock()
            if now >= deadline:
                return False
            due = self.clients.current.next_deadline()
            self.clients.current.drive(deadline if due is None else min(due, deadline))
            self.collect(self._clock())
        return True

    # ------------------------------------------------------------ the policy

    def _wait_needed(self, now: float) -> float | None:
        """0.0 when an attempt may start now, else seconds to wait (None: until something changes)."""
        if (
            self._closed
            or self.state != PublisherState.RUNNING
            or self._in_flight >= self.limit
            or self.clients.waiting is not None
        ):
            return None
        if not (self._queue or self._retry):
            return None
        if now < self._resume_at:
            return self._resume_at - now
        if self._probing and self._probe_in_flight:
            return None
        if now < self._paced_until and self.max_rate > 0:  # a max_rate removed by a reload applies at once
            return self._paced_until - now
        return 0.0

    def _grant(self, now: float) -> Attempt:
        post = heapq.heappop(self._retry)[2] if self._retry else self._queue.popleft()
        if self.max_rate > 0:
            self._paced_until = now + post.count / self.max_rate
        self._in_flight += 1
        self.highest_sent_seq = max(self.highest_sent_seq, post.seq + len(post.times) - 1)
        if self._probing:
            self._probe_in_flight = True
        return Attempt(post, self._generation, self._probing)

    def finish(self, attempt: Attempt, result: Result, now: float | None = None) -> None:
        """Account for one attempt and move the backoff."""
        now = self._clock() if now is None else now
        post = attempt.post
        self._in_flight -= 1
        if attempt.probe:
            self._probe_in_flight = False
        self.counts.count(post, result)
        if result.ok:
            # Reset, but a wait under way still runs out: a request already in flight when
            # the failure came may succeed meanwhile; nothing new starts before the wait is over.
            if self.backoff.failures or self.backoff.floor:  # the common case needs no new Backoff
                self.backoff = self.backoff.succeeded()
            self._probing = False
            self.highest_acked_seq = max(self.highest_acked_seq, post.seq + len(post.times) - 1)
            if self.failure_log.failing:
                self.failure_log.success(self.clients.current.url)
            self._on_done(post, result)
        else:
            judged = self.state != PublisherState.PAUSED and not self._closed
            retry = self.judge(post, result) if judged else ()
            if judged and not retry:  # set aside: done, not delivered
                self._on_done(post, result)
            for again in retry:
                heapq.heappush(self._retry, (again.seq, next(self._tiebreak), again))
            if len(retry) > 1:  # a bulk envelope split to find a refused event: an answer, not an outage
                self.failure_log.failure(self.clients.current.url, result, "split in halves")
                return
            self._failed(attempt, result, now)

    def _failed(self, attempt: Attempt, result: Result, now: float) -> None:
        if attempt.generation != self._generation:
            # Already in flight when an earlier failure started this wait: no doubling.
            if result.retry_after:
                self._resume_at = max(self._resume_at, now + result.retry_after)
                self._probing = True
            self.failure_log.failure(self.clients.current.url, result, "already in backoff")
            return
        self.backoff = self.backoff.failed(result.retry_after)
        self._generation += 1
        self._probing = True
        if self.backoff.exceeded or self.state == PublisherState.BACKOFF_EXCEEDED:
            self._resume_at = float("inf")
            self.failure_log.failure(self.clients.current.url, result, "stopped")
            if self.state == PublisherState.RUNNING:
                self._exceeded_wait = self.backoff.current
                support_log.error(
                    "sink %s: the next retry wait (%g s) exceeds max_retry_backoff (%g s); "
                    "sending stopped until the publisher is restarted",
                    self.sink,
                    self._exceeded_wait,
                    self.backoff.maximum,
                )
                self._set_state(PublisherState.BACKOFF_EXCEEDED)
            return
        wait = self.backoff.current
        self._resume_at = now + wait
        self.failure_log.failure(self.clients.current.url, result, f"retrying the oldest event in {wait:g} s")

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            if self._on_state_change is not None:
                self._on_state_change()
