"""One sink's HTTP side on libcurl (pycurl): `HttpClient`.

Owns the sink's libcurl settings (set once per easy handle: http and https
only, redirects never followed, an empty `Expect:`, TLS against the system
trust store or the sink's `ca_file`, no proxy from the environment; the HTTP
options of README's "HTTP options of a sink" come from sinks/curl_options.py), a
`CurlMulti` with up to `max_in_flight` easy handles kept alive and reused, the
per-attempt request (headers, Basic auth, `webhook-id`, Standard Webhooks
signature), and the mapping of every answer or libcurl error to exactly one
outcome (`Result`).

No threads: given the worker's loop (common/loop.py), libcurl's socket callback
becomes `add_handler`/`update_handler`/`remove_handler` and its timer callback
one loop timer (tornado's curl_httpclient is the model); that timer is also the
response watchdog's. When transfers end, `on_finished()` tells the owner, which
takes their results with `finished()`. Without a loop, `post()` and `drive()`
drive the same machinery with a private poll (a one-off attempt: the stop event
at shutdown, tests), so both paths run the same code.

libcurl has one limit for connecting (`CONNECTTIMEOUT`) but none for "the
answer once connected", so `response_timeout` is kept here: each transfer has
a watchdog deadline, checked only when it comes due (a normal POST finishes
long before and costs nothing), and a transfer with no answer within
`response_timeout` of being sent is aborted as a `timeout`.
"""

from __future__ import annotations

import base64
import functools
import select
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pycurl

import common
from common.backoff import RETRY_AFTER_STATUSES, parse_retry_after
from common.config_types import SinkConfig, TuningConfig, redact_url, url_credentials
from common.vocabulary import POST_OUTCOMES, PostOutcome
from sinks.curl_options import (
    ClientCertificate,
    Proxy,
    gzip_body,
    option_headers,
    options_key,
    set_handle_options,
    set_multi_options,
)
from sinks.curl_outcome import last_answer, outcome_of, parse_headers, reason, reason_phrase
from sinks.deadline import Deadline
from sinks.signing import Signer

if TYPE_CHECKING:
    from common.loop import Loop

OUTCOMES = POST_OUTCOMES
SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
USER_AGENT = f"eventsink-agent/{common.__version__}"
ANSWER_KEPT = 512  # bytes of a response body kept (for the failure's detail)

_HTTP_ONLY = pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS
# The poll bits of curl's socket callback and of socket_action happen to be zmq's and poll(2)'s
# IN/OUT (1, 2), so they go to the loop's zmq.Poller unchanged.
WATCH_IN, WATCH_OUT = pycurl.POLL_IN, pycurl.POLL_OUT


@dataclass(frozen=True, slots=True)
class Result:
    """How one POST ended."""

    outcome: str
    status: int | None = None
    duration: float = 0.0
    retry_after: float | None = None
    detail: str = ""  # the reason, for the log (never credentials)
    answer: bytes = b""  # the first ANSWER_KEPT bytes of a failed answer's body
    # What was given to libcurl: (the header lines, the body as sent), references only (the ring of
    # POSTs as sent, sinks/deliveries.py, formats them when asked). Holds secrets: never display it.
    request: tuple | None = field(default=None, repr=False, compare=False)
    ok: bool = field(init=False, repr=False, compare=False)  # a 2xx: set once, read by every stage after

    def __post_init__(self) -> None:
        object.__setattr__(self, "ok", self.outcome == PostOutcome.SUCCESS)


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float
    response: float


class Transfer:
    """One easy handle, kept alive across POSTs, and what its current POST gathered."""

    __slots__ = (
        "handle",
        "token",
        "started",
        "deadline",
        "timeouts",
        "lines",
        "answer",
        "aborted",
        "limits",
        "request",
    )

    def __init__(self, handle: pycurl.Curl):
        self.handle = handle
        self.token: object = None
        self.started = 0.0
        self.deadline = 0.0  # the watchdog's next look at this transfer
        self.timeouts: Timeouts | None = None
        self.lines: list[bytes] = []
        self.answer = bytearray()
        self.aborted = ""
        self.limits: Timeouts | None = None  # the timeouts set on the handle now
        self.request: tuple | None = None  # (headers, body) of its current POST, as given to libcurl
        # A C-level bound method: no Python frame per header line (a 2xx never looks at them).
        handle.setopt(pycurl.HEADERFUNCTION, self.lines.append)
        handle.setopt(pycurl.WRITEFUNCTION, self._body)

    def _body(self, chunk: bytes) -> None:
        room = ANSWER_KEPT - len(self.answer)
        if room > 0:
            self.answer += chunk[:room]

    def reset(self) -> None:
        self.token = None
        self.lines.clear()
        self.answer.clear()
        self.aborted = ""
        self.request = None


class HttpClient:
    """One sink's HTTP side: a CurlMulti, `max_in_flight` kept-alive handles, one POST per start()."""

    def __init__(self, sink: SinkConfig, tuning: TuningConfig, loop: Loop | None = None):
        self.key = self.settings_key(sink, tuning)
        self.url = redact_url(sink.url)  # credentials go in the Authorization header, never to libcurl
        self.timeouts = Timeouts(tuning.connection_timeout, tuning.response_timeout)
        self.limit = max(1, sink.max_in_flight)
        self._static_headers = self._headers_of(sink)
        self._signer = Signer(sink.secret) if sink.secret else None
        self._sink = sink
        self._gzip = sink.compression == "gzip"
        self._client_certificate = ClientCertificate.of(sink)  # read now: renewed files make a new client
        self._proxy = Proxy.of(sink.proxy)
        self._loop = loop
        self._due = None if loop is None else Deadline(loop, self._due_now)  # libcurl's timer, the watchdog
        self._armed_at = float("inf")  # when _due runs (kept here: compared once per action)
        self.on_finished: Callable[[], None] | None = None  # the owner's: results wait in `done`
        self.watched: dict[int, int] = {}  # fd -> WATCH_* bits libcurl waits for
        self._parked: dict[int, int] = {}  # on the loop: kept-alive sockets no POST uses now -> their bits
        self._timer_at: float | None = None  # libcurl's own timer, monotonic
        self._idle: list[Transfer] = []
        self._busy: dict[pycurl.Curl, Transfer] = {}
        self.done: list[tuple[object, Result]] = []  # (token, Result) of POSTs ended, for the owner to take
        self.connects = 0  # new connections opened (keep-alive reuse shows as few)
        self._multi = pycurl.CurlMulti()
        self._multi.setopt(pycurl.M_SOCKETFUNCTION, self._on_socket)
        self._multi.setopt(pycurl.M_TIMERFUNCTION, self._on_timer)
        self._multi.setopt(pycurl.M_MAX_HOST_CONNECTIONS, self.limit)
        self._multi.setopt(pycurl.M_MAXCONNECTS, self.limit)
        set_multi_options(self._multi, sink)

    @staticmethod
    def settings_key(sink: SinkConfig, tuning: TuningConfig) -> tuple:
        """Everything that needs a new client when it changes."""
        return (
            sink.url,
            sink.username,
            sink.password,
            sink.verify_tls,
            sink.ca_file,
            sink.secret,
            sink.max_in_flight,
            tuning.connection_timeout,
            tuning.response_timeout,
            *options_key(sink),
        )

    def __repr__(self) -> str:
        return f"HttpClient({self.url})"

    @staticmethod
    def _headers_of(sink: SinkConfig) -> list[str]:
        headers = [
            "Content-Type: application/json",
            f"User-Agent: {USER_AGENT}",
            "Expect:",
        ]  # no 100-continue wait for bodies over 1 KiB
        user, password = (sink.username, sink.password) if sink.username else url_credentials(sink.url)
        if user:
            token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            headers.append(f"Authorization: Basic {token}")
        return headers + option_headers(sink)

    def _new_handle(self) -> Transfer:
        c = pycurl.Curl()
        sink = self._sink
        c.setopt(pycurl.URL, self.url)
        c.setopt(pycurl.PROTOCOLS, _HTTP_ONLY)
        c.setopt(pycurl.REDIR_PROTOCOLS, _HTTP_ONLY)
        c.setopt(pycurl.FOLLOWLOCATION, 0)
        c.setopt(pycurl.NOSIGNAL, 1)
        c.setopt(pycurl.TCP_NODELAY, 1)
        c.setopt(pycurl.POST, 1)
        if sink.url.lower().startswith("https:"):
            if sink.verify_tls:
                c.setopt(pycurl.SSL_VERIFYPEER, 1)
                c.setopt(pycurl.SSL_VERIFYHOST, 2)
                c.setopt(pycurl.CAINFO, sink.ca_file or SYSTEM_CA_BUNDLE)
            else:
                c.setopt(pycurl.SSL_VERIFYPEER, 0)
                c.setopt(pycurl.SSL_VERIFYHOST, 0)
        set_handle_options(c, sink, self._client_certificate, self._proxy, sink.ca_file or SYSTEM_CA_BUNDLE)
        return Transfer(c)

    # ------------------------------------------------------------ starting and finishing

    @property
    def in_flight(self) -> int:
        return len(self._busy)

    def start(
        self, body: bytes, webhook_id: str, token: object, now: float | None = None, timeouts: Timeouts | None = None
    ) -> None:
        """Begin one POST of BODY; its Result comes back from finished() with TOKEN."""
        if self._gzip:  # compressed before signing: the signature covers the bytes as sent
            body = gzip_body(body)
        t = self._idle.pop() if self._idle else self._new_handle()  # idle ones were reset as they ended
        t.token = token
        t.timeouts = timeouts or self.timeouts
        headers = self._static_headers + [f"webhook-id: {webhook_id}"]
        if self._signer is not None:
            headers += [f"{k}: {v}" for k, v in self._signer.headers(webhook_id, body).items()]
        c = t.handle
        c.setopt(pycurl.HTTPHEADER, headers)
        c.setopt(pycurl.POSTFIELDSIZE, len(body))
        c.setopt(pycurl.POSTFIELDS, body)
        t.request = (headers, body)
        if t.limits is not t.timeouts:  # set once per handle, again only for an attempt with its own
            t.limits = t.timeouts
            c.setopt(pycurl.CONNECTTIMEOUT_MS, max(1, int(t.timeouts.connect * 1000)))
            c.setopt(pycurl.TIMEOUT_MS, max(1, int((t.timeouts.connect + t.timeouts.response) * 1000)))
        t.started = time.monotonic() if now is None else now
        t.deadline = t.started + t.timeouts.response
        self._busy[c] = t
        self._multi.add_handle(c)

    def finished(self) -> list[tuple[object, Result]]:
        """The (token, Result) of every POST that ended since the last call."""
        done, self.done = self.done, []
        return done

    def _collect(self) -> None:
        while True:
            queued, ok, failed = self._multi.info_read()
            for c in ok:
                self._end(c, 0, "")
            for c, errno, message in failed:
                self._end(c, errno, message)
            if not queued:
                return

    def _end(self, c: pycurl.Curl, errno: int, message: str) -> None:
        t = self._busy.pop(c)
        self._multi.remove_handle(c)
        self.connects += c.getinfo(pycurl.NUM_CONNECTS)
        status = 0 if errno or t.aborted else c.getinfo(pycurl.RESPONSE_CODE)
        if 200 <= status < 300:  # the common case, without _result's frame
            result = Result(PostOutcome.SUCCESS, status, max(1e-6, time.monotonic() - t.started), request=t.request)
        else:
            result = self._result(t, errno, message)
        self.done.append((t.token, result))
        t.token = t.request = None  # t.reset(), inlined: a 2xx left no lines or answer worth keeping
        t.lines.clear()
        t.answer.clear()
        self._idle.append(t)

    def _result(self, t: Transfer, errno: int, message: str) -> Result:
        c = t.handle
        duration = max(1e-6, time.monotonic() - t.started)
        if t.aborted:
            return Result(PostOutcome.TIMEOUT, None, duration, detail=t.aborted, request=t.request)
        if errno:
            return Result(
                outcome_of(errno, message), None, duration, detail=reason(c, errno, message), request=t.request
            )
        status = c.getinfo(pycurl.RESPONSE_CODE)
        if 200 <= status < 300:
            return Result(PostOutcome.SUCCESS, status, duration, request=t.request)
        answer = last_answer(t.lines)
        headers = parse_headers(answer)
        if 300 <= status < 400:
            location = headers.get("location")
            where = redact_url(location) if location else "no Location"
            return Result(
                PostOutcome.REDIRECT,
                status,
                duration,
                detail=f"HTTP {status} redirect to {where} (not followed)",
                answer=bytes(t.answer),
                request=t.request,
            )
        retry_after = parse_retry_after(headers.get("retry-after")) if status in RETRY_AFTER_STATUSES else None
        detail = f"HTTP {status} {reason_phrase(answer)}".rstrip()
        if retry_after is not None:
            detail += f" (Retry-After {retry_after:g} s)"
        return Result(PostOutcome.HTTP_ERROR, status, duration, retry_after, detail, bytes(t.answer), t.request)

    # ------------------------------------------------------------ the poll loop's side

    def _on_socket(self, what: int, fd: int, multi, data) -> None:
        loop = self._loop
        if what == pycurl.POLL_REMOVE:
            bits = self.watched.pop(fd, None)
            if bits is not None and loop is not None:
                # A kept-alive connection between two POSTs: it stays in the loop, waiting for input
                # only, so the next POST on it costs no poller calls. Input while parked means the
                # server closed it, and a socket libcurl closed polls as an error: either way
                # `_socket_event` takes it out of the loop then.
                if bits != WATCH_IN:
                    loop.update_handler(fd, WATCH_IN)
                self._parked[fd] = WATCH_IN
            return
        if loop is not None:
            bits = self._parked.pop(fd, None)
            if bits is None:
                bits = self.watched.get(fd)
            if bits is None:  # once per connection
                loop.add_handler(fd, functools.partial(self._socket_event, fd), what)
            elif bits != what:
                loop.update_handler(fd, what)
        self.watched[fd] = what

    def _unloop(self, fd: int) -> None:
        try:
            self._loop.remove_handler(fd)
        except KeyError:
            pass  # waited for nothing (bits 0): the poller had let it go already

    def _on_timer(self, timeout_ms: int) -> None:
        # Only noted: the loop timer is armed once the action that made libcurl ask is over.
        self._timer_at = None if timeout_ms < 0 else time.monotonic() + timeout_ms / 1000.0

    def next_deadline(self) -> float | None:
        """When the loop must act at the latest: now while finished POSTs wait for finished() (one
        can end inside kick(), after the loop collected), else libcurl's timer or a watchdog."""
        if self.done:
            return 0.0  # long past: the loop must not sleep (a fresh monotonic() would round up to 1 ms)
        due = self._timer_at
        for t in self._busy.values():
            if due is None or t.deadline < due:
                due = t.deadline
        return due

    def socket_ready(self, fd: int, events: int) -> None:
        """FD polled ready with EVENTS (poll bits: 1 in, 2 out, 4 error)."""
        self._multi.socket_action(fd, events & 7)
        self._collect()

    def _socket_event(self, fd: int, events: int) -> None:
        """The loop's handler of one of libcurl's sockets (kick() and _settle(), inlined: once per answer)."""
        if fd in self._parked:  # closed by the server (libcurl sees it at reuse) or by libcurl
            del self._parked[fd]
            self._unloop(fd)
            return
        multi = self._multi
        multi.socket_action(fd, events & 7)
        if self._timer_at is not None and self._timer_at <= time.monotonic():
            self._timer_at = None
            multi.socket_action(pycurl.SOCKET_TIMEOUT, 0)
        self._collect()
        if self.done and self.on_finished is not None:
            self.on_finished()
        self._arm()

    def _due_now(self) -> None:
        """The loop timer: libcurl's timer or a watchdog came due."""
        self._armed_at = float("inf")
        self.timer_due(time.monotonic())
        self._settle()

    def _settle(self) -> None:
        """After an action on the loop: tell the owner about ended POSTs, arm the loop timer."""
        if self.done and self.on_finished is not None:
            self.on_finished()
        self._arm()

    def _arm(self) -> None:
        due = self._timer_at
        for t in self._busy.values():
            if due is None or t.deadline < due:
                due = t.deadline
        if due is not None and due < self._armed_at:  # a later one: the pending timer looks again then
            self._armed_at = due
            self._due.at(due)

    def kick(self) -> None:
        """Let libcurl act on the transfers just added (it asks for that with a 0 ms timer)."""
        if self._timer_at is not None and self._timer_at <= time.monotonic():
            self._timer_at = None
            self._multi.socket_action(pycurl.SOCKET_TIMEOUT, 0)
        self._collect()

    def started(self) -> None:
        """The owner started POSTs on the loop: let them leave now and arm the loop timer (results
        that came at once stay in `done`: the owner is the one asking). kick(), inlined: once per POST."""
        if self._timer_at is not None and self._timer_at <= time.monotonic():
            self._timer_at = None
            self._multi.socket_action(pycurl.SOCKET_TIMEOUT, 0)
        self._collect()
        if self._loop is not None:
            self._arm()

    def timer_due(self, now: float) -> None:
        """Run libcurl's timer if it is due, and the response-timeout watchdog."""
        if self._timer_at is not None and now >= self._timer_at:
            self._timer_at = None
            self._multi.socket_action(pycurl.SOCKET_TIMEOUT, 0)
        for t in [t for t in self._busy.values() if now >= t.deadline]:
            self._watchdog(t, now)
        self._collect()

    def _watchdog(self, t: Transfer, now: float) -> None:
        sent = t.handle.getinfo(pycurl.PRETRANSFER_TIME)  # 0.0 while still connecting
        if not sent:  # libcurl's CONNECTTIMEOUT covers this phase; look again once it would have fired
            t.deadline = t.started + t.timeouts.connect + t.timeouts.response
            if now < t.deadline:
                return
        else:
            t.deadline = t.started + sent + t.timeouts.response
            if now < t.deadline:
                return
        t.aborted = f"no answer within response_timeout ({t.timeouts.response:g} s)"
        self._busy.pop(t.handle)
        self._multi.remove_handle(t.handle)
        self.done.append((t.token, self._result(t, 0, "")))
        t.reset()
        # An aborted handle's connection is closed by libcurl; the handle itself is reusable.
        self._idle.append(t)

    # ------------------------------------------------------------ one-off POSTs

    def post(self, body: bytes, webhook_id: str, timeouts: Timeouts | None = None) -> Result:
        """POST BODY once and wait for its end (driving the multi with a private poll)."""
        token = object()
        self.start(body, webhook_id, token, timeouts=timeouts)
        while True:
            for i, (done_token, result) in enumerate(self.done):
                if done_token is token:  # other POSTs' results stay for finished()
                    del self.done[i]
                    return result
            self.drive(self.next_deadline())

    def drive(self, until: float | None) -> None:
        """Wait for libcurl's sockets until UNTIL (monotonic) at most, and act on what is ready."""
        poller = select.poll()
        for fd, bits in self.watched.items():
            poller.register(fd, (select.POLLIN if bits & WATCH_IN else 0) | (select.POLLOUT if bits & WATCH_OUT else 0))
        wait = 1.0 if until is None else max(0.0, until - time.monotonic())
        for fd, ev in poller.poll(wait * 1000):
            bits = (
                (1 if ev & (select.POLLIN | select.POLLHUP) else 0)
                | (2 if ev & select.POLLOUT else 0)
                | (4 if ev & select.POLLERR else 0)
            )
            self.socket_ready(fd, bits)
        self.timer_due(time.monotonic())

    def abort_all(self) -> int:
        """End every POST under way without a result (they stay undelivered); returns how many."""
        n = len(self._busy)
        for c in list(self._busy):
            self._busy.pop(c).reset()
            self._multi.remove_handle(c)
        return n

    def close(self) -> None:
        self.abort_all()
        if self._loop is not None:
            for fd in [*self.watched, *self._parked]:
                self._unloop(fd)
            self._due.cancel()
            self._armed_at = float("inf")
        self.watched.clear()
        self._parked.clear()
        for t in self._idle:
            t.handle.close()
        self._idle.clear()
        self._multi.close()
