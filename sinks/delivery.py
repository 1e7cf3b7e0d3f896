"""Delivery: POSTing a sink's events over HTTP with sink-level backoff.

Owns `HttpClient` (one persistent urllib3 pool per sink: headers, Basic auth,
webhook-id, Standard Webhooks signing, TLS, and the mapping of every answer or
error to exactly one outcome), `Dispatcher` (the send queue, `max_in_flight`
sender threads, the sink's backoff with one probe per wait, counters and
histograms) and `FailureLog` (failures on `support.events`, rate-limited).

Backoff belongs to the sink: after a failure nothing is sent for the current
wait, then the oldest undelivered Post goes alone as a probe; each failure of a
request started since the last failure doubles the wait (failures of requests
already in flight do not), a 429/503 `Retry-After` sets a floor, a success
resets it, and a wait above the maximum stops sending (`backoff_exceeded`).
"""

from __future__ import annotations

import base64
import heapq
import itertools
import logging
import os
import re
import ssl
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace

import urllib3
import urllib3.connection
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    InsecureRequestWarning,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)

import agent
from agent.backoff import RETRY_AFTER_STATUSES, Backoff, parse_retry_after
from agent.config import SinkConfig, TuningConfig, redact_url, url_credentials
from agent.internal import Histogram
from agent.logs import SUPPORT
from sinks.shaping import Post
from sinks.signing import Signer

SUCCESS, HTTP_ERROR, REDIRECT, TIMEOUT, CONNECTION_ERROR, TLS_ERROR = (
    "success", "http_error", "redirect", "timeout", "connection_error", "tls_error",
)
OUTCOMES = (SUCCESS, HTTP_ERROR, REDIRECT, TIMEOUT, CONNECTION_ERROR, TLS_ERROR)
RUNNING, PAUSED, BACKOFF_EXCEEDED = "running", "paused", "backoff_exceeded"
SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
USER_AGENT = f"eventsink-agent/{agent.__version__}"

support_log = logging.getLogger(SUPPORT)


@dataclass(frozen=True, slots=True)
class Result:
    """How one POST ended."""

    outcome: str
    status: int | None = None
    duration: float = 0.0
    retry_after: float | None = None
    detail: str = ""  # the reason, for the log (never credentials)

    @property
    def ok(self) -> bool:
        return self.outcome == SUCCESS


_ORIGIN_PREFIX = re.compile(r"^(?:<[^>]*>|\w+\([^)]*\)): ")  # "<...object at 0x..>: " or "HTTPConnectionPool(...): "


def _reason(exc: BaseException) -> str:
    """A short reason without object addresses or connection/pool prefixes (the URL is logged beside it)."""
    return _ORIGIN_PREFIX.sub("", str(exc) or type(exc).__name__, count=1)[:300]


def tls_context(sink: SinkConfig) -> ssl.SSLContext:
    """The sink's TLS policy: the system store (or `ca_file`) with host names checked, or nothing checked."""
    if not sink.verify_tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    if sink.ca_file:
        return ssl.create_default_context(cafile=sink.ca_file)
    if os.path.exists(SYSTEM_CA_BUNDLE):
        return ssl.create_default_context(cafile=SYSTEM_CA_BUNDLE)
    return ssl.create_default_context()


class _OneWrite:
    """Sends the request head and a bytes body in one write: one segment and one wake-up of
    the receiver per POST instead of two (urllib3 writes them separately)."""

    _body_with_head: bytes | None = None

    def request(self, method, url, body=None, headers=None, **kw):  # type: ignore[override]
        self._body_with_head = None  # never left over from a request that failed before sending
        if isinstance(body, bytes) and body and not kw.get("chunked"):
            self._body_with_head = body
            headers = {**(headers or {}), "Content-Length": str(len(body))}
            body = None
        super().request(method, url, body, headers, **kw)  # type: ignore[misc]

    def send(self, data):  # type: ignore[override]
        body, self._body_with_head = self._body_with_head, None
        super().send(data + body if body is not None else data)  # type: ignore[misc]


class _OneWriteHTTPConnection(_OneWrite, urllib3.connection.HTTPConnection):
    pass


class _OneWriteHTTPSConnection(_OneWrite, urllib3.connection.HTTPSConnection):
    pass


class HttpClient:
    """One sink's HTTP side: a persistent connection pool and the POST of one body."""

    def __init__(self, sink: SinkConfig, tuning: TuningConfig):
        self.key = self.settings_key(sink, tuning)
        self.url = redact_url(sink.url)
        parsed = urllib3.util.parse_url(sink.url)
        self.target = parsed.request_uri or "/"
        self.timeout = urllib3.Timeout(connect=tuning.connection_timeout, read=tuning.response_timeout)
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        user, password = (sink.username, sink.password) if sink.username else url_credentials(sink.url)
        if user:
            token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            headers["Authorization"] = f"Basic {token}"
        self._headers = headers
        self._signer = Signer(sink.secret) if sink.secret else None
        pool_options: dict = {"maxsize": max(1, sink.max_in_flight), "block": False, "retries": False,
                              "timeout": self.timeout}
        if parsed.scheme == "https":
            pool_options["ssl_context"] = tls_context(sink)
            if not sink.verify_tls:
                pool_options.update(cert_reqs="CERT_NONE", assert_hostname=False)
                warnings.filterwarnings("ignore", category=InsecureRequestWarning)
            else:
                pool_options["cert_reqs"] = "CERT_REQUIRED"
        # connection_from_url ignores any user:password in the URL: auth is the header above.
        self._pool = urllib3.connection_from_url(sink.url, **pool_options)
        self._pool.ConnectionCls = _OneWriteHTTPSConnection if parsed.scheme == "https" else _OneWriteHTTPConnection

    @staticmethod
    def settings_key(sink: SinkConfig, tuning: TuningConfig) -> tuple:
        """Everything that needs a new client when it changes."""
        return (sink.url, sink.username, sink.password, sink.verify_tls, sink.ca_file, sink.secret,
                sink.max_in_flight, tuning.connection_timeout, tuning.response_timeout)

    def __repr__(self) -> str:
        return f"HttpClient({self.url})"

    def post(self, body: bytes, webhook_id: str, timeout: urllib3.Timeout | None = None) -> Result:
        """POST BODY once (plus one immediate retry when a kept-alive connection turns out dropped)."""
        result = self._attempt(body, webhook_id, timeout)
        if result.outcome == CONNECTION_ERROR and result.detail.startswith("dropped:"):
            result = self._attempt(body, webhook_id, timeout)
        return result

    def _attempt(self, body: bytes, webhook_id: str, timeout: urllib3.Timeout | None) -> Result:
        headers = dict(self._headers)
        headers["webhook-id"] = webhook_id
        if self._signer is not None:
            headers.update(self._signer.headers(webhook_id, body))
        started = time.monotonic()
        try:
            resp = self._pool.urlopen("POST", self.target, body=body, headers=headers, retries=False,
                                      redirect=False, assert_same_host=False, timeout=timeout or self.timeout,
                                      preload_content=True)
        except SSLError as exc:
            return Result(TLS_ERROR, None, time.monotonic() - started, detail=_reason(exc))
        except NewConnectionError as exc:  # before ConnectTimeoutError: it is a subclass
            return Result(CONNECTION_ERROR, None, time.monotonic() - started, detail=_reason(exc))
        except (ConnectTimeoutError, ReadTimeoutError) as exc:
            return Result(TIMEOUT, None, time.monotonic() - started, detail=_reason(exc))
        except ProtocolError as exc:
            return Result(CONNECTION_ERROR, None, time.monotonic() - started, detail="dropped: " + _reason(exc))
        except (HTTPError, OSError) as exc:
            return Result(CONNECTION_ERROR, None, time.monotonic() - started, detail=_reason(exc))
        duration = time.monotonic() - started
        status = resp.status
        if 200 <= status < 300:
            return Result(SUCCESS, status, duration)
        if 300 <= status < 400:
            location = resp.headers.get("Location")
            where = redact_url(location) if location else "no Location"
            return Result(REDIRECT, status, duration, detail=f"HTTP {status} redirect to {where} (not followed)")
        retry_after = parse_retry_after(resp.headers.get("Retry-After")) if status in RETRY_AFTER_STATUSES else None
        detail = f"HTTP {status} {resp.reason or ''}".rstrip()
        if retry_after is not None:
            detail += f" (Retry-After {retry_after:g} s)"
        return Result(HTTP_ERROR, status, duration, retry_after, detail)

    def close(self) -> None:
        self._pool.close()


class FailureLog:
    """Logs failures on support.events: the first of a kind, then at most one line per kind every EVERY s."""

    MAX_KINDS = 64

    def __init__(self, sink: str, every: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self.sink = sink
        self.every = every
        self.clock = clock
        self._kinds: dict[tuple, list] = {}  # (outcome, status) -> [logged_at, suppressed]
        self.failing = 0  # consecutive failures

    def failure(self, url: str, result: Result, then: str) -> None:
        self.failing += 1
        key = (result.outcome, result.status)
        now = self.clock()
        entry = self._kinds.get(key)
        if entry is not None and now - entry[0] < self.every:
            entry[1] += 1
            return
        more = f" ({entry[1]} more like it since)" if entry and entry[1] else ""
        support_log.warning("sink %s: POST to %s failed: %s: %s; %s%s",
                            self.sink, url, result.outcome, result.detail or "no detail", then, more)
        if len(self._kinds) >= self.MAX_KINDS:
            self._kinds.clear()
        self._kinds[key] = [now, 0]

    def success(self, url: str) -> None:
        if self.failing:
            support_log.info("sink %s: POST to %s succeeded after %d failed attempts", self.sink, url, self.failing)
            self.failing = 0
            self._kinds.clear()


@dataclass(frozen=True, slots=True)
class Attempt:
    post: Post
    generation: int  # the backoff generation it started in
    probe: bool


class Dispatcher:
    """The send queue of one sink, its sender threads and its backoff.

    `put` (main thread) appends Posts in send order; sender threads `take` the
    oldest eligible one, POST it and `finish` it. Delivered Posts land in
    `completed` for the main thread. `try_take`/`finish` take an explicit clock
    value so the policy can be tested without threads.
    """

    def __init__(self, sink: str, client: HttpClient, backoff: Backoff, limit: int,
                 on_state_change: Callable[[], None] | None = None, clock: Callable[[], float] = time.monotonic):
        self.sink = sink
        self._client = client
        self.backoff = backoff
        self.limit = max(1, limit)
        self.state = RUNNING
        self.completed: deque[Post] = deque()  # delivered, for the main thread
        self.attempts = dict.fromkeys(OUTCOMES, 0)
        self.delivered = 0
        self.failures = 0
        self.post_duration = Histogram()
        self.event_age = Histogram()
        self.failure_log = FailureLog(sink)
        self._on_state_change = on_state_change
        self._clock = clock
        self._cond = threading.Condition()
        self._queue: deque[Post] = deque()
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
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------ main thread

    def put(self, post: Post) -> None:
        with self._cond:
            self._queue.append(post)
            self._cond.notify()

    @property
    def queued(self) -> int:
        return len(self._queue) + len(self._retry)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def start(self) -> None:
        with self._cond:
            while len(self._threads) < self.limit:
                t = threading.Thread(target=self._sender, name=f"post-{len(self._threads)}", daemon=True)
                self._threads.append(t)
                t.start()

    def configure(self, limit: int, initial: float, maximum: float, client: HttpClient | None = None) -> None:
        """New settings, live: concurrency, backoff bounds (failures so far kept), maybe a new client.
        Call `start` after raising the limit, for the extra sender threads."""
        old = None
        with self._cond:
            self.limit = max(1, limit)
            self.backoff = replace(self.backoff, initial=initial, maximum=maximum)
            if client is not None:
                old, self._client = self._client, client
            self._cond.notify_all()
        if old is not None:
            old.close()

    @property
    def client(self) -> HttpClient:
        return self._client

    def pause(self) -> int:
        """Stop sending and forget what is queued (it stays in the journal); returns how many Posts were dropped."""
        with self._cond:
            dropped = len(self._queue) + len(self._retry)
            self._queue.clear()
            self._retry.clear()
            self._set_state(PAUSED)
            self._cond.notify_all()
            return dropped

    def close(self) -> None:
        """No further attempts: sender threads exit once their POST is over."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._in_flight == 0, timeout)

    def last_seq_out(self) -> int:
        """The seq a receiver may have seen last: the last acknowledged one, or, while a POST
        is still under way (it may yet arrive), the last one sent."""
        with self._cond:
            return self.highest_sent_seq if self._in_flight else self.highest_acked_seq

    def send_once(self, post: Post, timeout: urllib3.Timeout) -> Result:
        """One attempt outside the queue and the backoff (the stop event at shutdown)."""
        result = self._client.post(post.body, post.webhook_id, timeout)
        with self._cond:
            self._count(post, result)
            if result.ok:
                self.completed.append(post)
        return result

    def snapshot(self) -> dict:
        with self._cond:
            waiting = self.backoff.current if self.backoff.failures else 0.0
            return {
                "in_flight": self._in_flight,
                "delivered": self.delivered,
                "failures": self.failures,
                "current_backoff": waiting,
                "next_backoff": self.backoff.next,
                "attempts": dict(self.attempts),
                "post_duration": self.post_duration.snapshot(),
                "event_age": self.event_age.snapshot(),
            }

    # ------------------------------------------------------------ sender side

    def try_take(self, now: float) -> Attempt | None:
        """The next attempt allowed at NOW, or None."""
        with self._cond:
            return self._grant() if self._wait_needed(now) == 0.0 else None

    def take(self) -> Attempt | None:
        """Block until an attempt is allowed; None once closed."""
        with self._cond:
            while not self._closed:
                wait = self._wait_needed(self._clock())
                if wait == 0.0:
                    return self._grant()
                self._cond.wait(wait)
            return None

    def _wait_needed(self, now: float) -> float | None:
        """0.0 when an attempt may start now, else seconds to wait (None: until notified)."""
        if self._closed or self.state != RUNNING or self._in_flight >= self.limit:
            return None
        if not (self._queue or self._retry):
            return None
        if now < self._resume_at:
            return self._resume_at - now
        if self._probing and self._probe_in_flight:
            return None
        return 0.0

    def _grant(self) -> Attempt:
        post = heapq.heappop(self._retry)[2] if self._retry else self._queue.popleft()
        self._in_flight += 1
        self.highest_sent_seq = max(self.highest_sent_seq, post.seq + len(post.times) - 1)
        if self._probing:
            self._probe_in_flight = True
        return Attempt(post, self._generation, self._probing)

    def finish(self, attempt: Attempt, result: Result, now: float | None = None) -> None:
        """Account for one attempt and move the backoff."""
        now = self._clock() if now is None else now
        post = attempt.post
        with self._cond:
            self._in_flight -= 1
            if attempt.probe:
                self._probe_in_flight = False
            self._count(post, result)
            if result.ok:
                # Reset, but a wait under way still runs out: a request already in flight when
                # the failure came may succeed meanwhile; nothing new starts before the wait is over.
                self.backoff = self.backoff.succeeded()
                self._probing = False
                self.highest_acked_seq = max(self.highest_acked_seq, post.seq + len(post.times) - 1)
                self.completed.append(post)
                self.failure_log.success(self._client.url)
            else:
                if self.state != PAUSED and not self._closed:
                    heapq.heappush(self._retry, (post.seq, next(self._tiebreak), post))
                self._failed(attempt, result, now)
            self._cond.notify_all()

    def _failed(self, attempt: Attempt, result: Result, now: float) -> None:
        if attempt.generation != self._generation:
            # Already in flight when an earlier failure started this wait: no doubling.
            if result.retry_after:
                self._resume_at = max(self._resume_at, now + result.retry_after)
                self._probing = True
            self.failure_log.failure(self._client.url, result, "already in backoff")
            return
        self.backoff = self.backoff.failed(result.retry_after)
        self._generation += 1
        self._probing = True
        if self.backoff.exceeded or self.state == BACKOFF_EXCEEDED:
            self._resume_at = float("inf")
            self.failure_log.failure(self._client.url, result, "stopped")
            if self.state == RUNNING:
                support_log.error("sink %s: the next retry wait (%g s) exceeds max_retry_backoff (%g s); "
                                  "sending stopped until the publisher is restarted",
                                  self.sink, self.backoff.current, self.backoff.maximum)
                self._set_state(BACKOFF_EXCEEDED)
            return
        wait = self.backoff.current
        self._resume_at = now + wait
        self.failure_log.failure(self._client.url, result, f"retrying the oldest event in {wait:g} s")

    def _count(self, post: Post, result: Result) -> None:
        self.attempts[result.outcome] += 1
        self.post_duration.observe(result.duration)
        if result.ok:
            self.delivered += post.count
            wall = time.time()
            for t in post.times:
                if t > 0:  # 0: the publisher's time was not a number
                    self.event_age.observe(max(0.0, wall - t))
        else:
            self.failures += 1

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            if self._on_state_change is not None:
                self._on_state_change()

    def _sender(self) -> None:
        while True:
            attempt = self.take()
            if attempt is None:
                return
            client = self._client
            try:
                result = client.post(attempt.post.body, attempt.post.webhook_id)
            except Exception as exc:  # noqa: BLE001 - a sender thread must never die
                result = Result(CONNECTION_ERROR, detail=f"unexpected {type(exc).__name__}: {_reason(exc)}")
            self.finish(attempt, result)
