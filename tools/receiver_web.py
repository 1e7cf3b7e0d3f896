"""`eventsink-agent receive --web HOST:PORT`: the test receiver's live page (docs/commands.md).

Owns the page a browser talks to, served by tornado (escaping templates, static
files, Server-Sent Events) on its own IOLoop in its own thread, beside the
receiver's HTTP server: at `/`, what the receiver got, newest first (time, seq,
event, webhook-id, who it is about, the body as formatted JSON), its auth and
signature checks, seq gaps, resets and duplicate ids; at `/stream`, the same as
Server-Sent Events, which tools/receiver_web_assets/receiver.js adds to the open
page. The page shows its data without JavaScript; no inline script runs (the
Content-Security-Policy allows only this origin's files). Loopback addresses
only: the page has no login. A request whose Host is not this page's address
is refused, so a web site cannot read it through DNS rebinding.
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import ipaddress
import json
import os
import threading
from typing import Any

import tornado.httpserver
import tornado.ioloop
import tornado.iostream
import tornado.locks
import tornado.netutil
import tornado.web

from common.config_types import parse_listen
from tools.receiver import Receiver
from tools.receiver_server import ReceivedRequest
from tools.receiver_text import describe

ASSETS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "receiver_web_assets")
KEPT = 200  # requests the page holds (newest); older ones stay only in the terminal's output
BODY_SHOWN = 16 * 1024  # characters of a body shown; the rest is cut, and said so
PROBLEMS_SHOWN = 20
KEEPALIVE = 15.0  # s between comments on an idle stream: how a closed browser tab is noticed
FIGURES = (
    ("events", "Events"),
    ("requests", "Requests"),
    ("gaps", "Seq gaps"),
    ("missing", "Seqs missing"),
    ("resets", "Seq resets"),
    ("out_of_order", "Out of order"),
    ("duplicates", "Duplicate ids"),
    ("auth_failures", "Auth failures"),
    ("bad_signatures", "Bad signatures"),
    ("bad_requests", "Bad requests"),
)
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def loopback_listen(value: str) -> tuple[str, int]:
    """HOST:PORT of a loopback address (127.0.0.0/8, ::1, localhost); ValueError with the sentence otherwise."""
    addr = parse_listen(value)
    if addr is None:
        raise ValueError(f"--web must be HOST:PORT, e.g. 127.0.0.1:8081 (got {value!r})")
    host = addr[0]
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(
            f"--web must be a loopback address (127.0.0.0/8 or ::1), since the page has no login "
            f"(got {host!r}); reach it from elsewhere through an SSH tunnel"
        )
    return addr


def _check(required: bool, failed: bool, reached: bool, problem: str | None) -> str:
    if not required:
        return "not required"
    if failed:
        return f"failed: {problem}"
    return "ok" if reached else "not checked"


def _body_text(req: ReceivedRequest, envelope: dict | None) -> str:
    text = (req.body if req.content is None else req.content).decode("utf-8", errors="replace")
    try:  # a refused request's body too, when it is JSON
        text = json.dumps(envelope if envelope is not None else json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        pass
    return text if len(text) <= BODY_SHOWN else text[:BODY_SHOWN] + f"\n... ({len(text) - BODY_SHOWN} more characters)"


def entry_of(
    rx: Receiver,
    n: int,
    now: datetime.datetime,
    req: ReceivedRequest,
    envelope: dict | None,
    seen: list[tuple[dict, list[str]]],
) -> dict[str, Any]:
    """One received request (number n, arrived at `now`) as the page shows it and the stream sends it."""
    reached = req.method == "POST" and req.status != 413  # the checks ran (a bad method or size stops first)
    auth = _check(rx.username is not None or rx.bearer_token is not None, req.kind == "auth", reached, req.problem)
    sig = _check(rx.verifies_signatures, req.kind == "signature", reached and req.kind != "auth", req.problem)
    return {
        "n": n,
        "time": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "shown_time": now.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC",
        # A failed check's reason is shown as that check's result, not twice.
        "method": req.method,
        "path": req.path,
        "status": req.status,
        "problem": "" if req.kind in ("auth", "signature") else req.problem or "",
        "webhook_id": req.headers.get("webhook-id", ""),
        "auth": auth,
        "signature": sig,
        "events": [
            {"seq": ev.get("seq"), "event": str(ev.get("event")), "about": describe(ev), "flags": flags}
            for ev, flags in seen
        ],
        "body": _body_text(req, envelope),
    }


class LivePage:
    """What the page holds: the last KEPT requests as received, shaped for the page only when a page
    or a stream asks, and the streams waiting for the next one. Recording costs a deque append;
    the IOLoop is woken only while a stream follows."""

    def __init__(self, rx: Receiver):
        self.rx = rx
        self._lock = threading.Lock()  # record() runs in the receiver's handler threads
        self._received: collections.deque[tuple] = collections.deque(maxlen=KEPT)  # newest first
        self._shown: dict[int, dict[str, Any]] = {}  # n -> entry, IOLoop thread only
        self.followers = 0
        self.changed = tornado.locks.Condition()
        self.wake: Any = None  # set by ReceiverWeb: thread-safe, schedules changed.notify_all()

    def record(self, req: ReceivedRequest, envelope: dict | None, seen: list[tuple[dict, list[str]]]) -> None:
        """A Receiver watcher (under the receiver's lock)."""
        arrived = datetime.datetime.now(datetime.UTC)
        with self._lock:
            self._received.appendleft((len(self.rx.requests), arrived, req, envelope, seen))
        if self.followers:  # read after the append: a stream that starts meanwhile sees the request itself
            self.wake()

    @property
    def count(self) -> int:
        with self._lock:
            return self._received[0][0] if self._received else 0

    def entries(self, after: int = 0) -> list[dict[str, Any]]:
        """Entries newer than `after`, newest first."""
        with self._lock:
            received = list(self._received)
        shown = {r[0]: self._shown.get(r[0]) or entry_of(self.rx, *r) for r in received}
        self._shown = shown  # what fell off the deque goes from the cache too
        return [shown[r[0]] for r in received if r[0] > after]

    def state(self) -> dict[str, Any]:
        summary, problems = self.rx.summary_and_problems(PROBLEMS_SHOWN)
        return {"summary": summary, "problems": problems}

    def newer_than(self, n: int) -> list[dict[str, Any]]:
        """Entries newer than n, oldest first (stream order)."""
        return self.entries(n)[::-1]


class _Guarded(tornado.web.RequestHandler):
    """Every answer's headers, and the Host check (DNS rebinding) before any answer."""

    def set_default_headers(self) -> None:
        self.set_header("Content-Security-Policy", CSP)
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "no-referrer")

    def prepare(self) -> None:
        if self.request.host.lower() not in self.settings["allowed_hosts"]:
            raise tornado.web.HTTPError(403, reason="Host not allowed")


class _Handler(_Guarded):
    def initialize(self, live: LivePage) -> None:
        self.live = live

    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header("Cache-Control", "no-store")


class PageHandler(_Handler):
    def get(self) -> None:
        entries = self.live.entries()
        self.render(
            "page.html",
            entries=entries,
            url=self.live.rx.url,
            checks=_checks_text(self.live.rx),
            figures=FIGURES,
            count=entries[0]["n"] if entries else 0,
            **self.live.state(),
        )


class StreamHandler(_Handler):
    """Server-Sent Events: one `data:` line of JSON per request received after `?after=N` (or the
    Last-Event-ID of a reconnecting browser); the last of each batch also carries the figures."""

    async def get(self) -> None:
        self.set_header("Content-Type", "text/event-stream")
        after = self._after()
        self.live.followers += 1
        try:
            self.write(": live\n\n")  # the headers go out now: the browser's EventSource opens
            await self.flush()
            while True:
                fresh = self.live.newer_than(after)
                if fresh:
                    for entry in fresh[:-1]:
                        self.write(f"id: {entry['n']}\ndata: {json.dumps({'entry': entry})}\n\n")
                    last = {"entry": fresh[-1], **self.live.state()}  # the figures once per batch, with its last
                    self.write(f"id: {fresh[-1]['n']}\ndata: {json.dumps(last)}\n\n")
                    after = fresh[-1]["n"]
                    await self.flush()  # entries may arrive meanwhile: looked for again before waiting
                elif not await self.live.changed.wait(timeout=datetime.timedelta(seconds=KEEPALIVE)):
                    self.write(": keepalive\n\n")
                    await self.flush()
        except tornado.iostream.StreamClosedError:
            return
        finally:
            self.live.followers -= 1

    def _after(self) -> int:
        # A reconnecting EventSource says what it has (Last-Event-ID); a new one, what its page showed.
        given = self.request.headers.get("Last-Event-ID", "") or self.get_argument("after", "")
        return int(given) if given.isdigit() else self.live.count


class StaticFiles(_Guarded, tornado.web.StaticFileHandler):
    pass


def _checks_text(rx: Receiver) -> str:
    checks = [f"Basic auth as {rx.username!r}"] if rx.username else []
    checks += ["a bearer token"] if rx.bearer_token else []
    checks += ["webhook signatures"] if rx.verifies_signatures else []
    return ", ".join(checks) or "nothing (no auth or signature required)"


class ReceiverWeb:
    """The live page of one Receiver, on HOST:PORT, in a thread of its own."""

    def __init__(self, rx: Receiver, host: str = "127.0.0.1", port: int = 0):
        self.rx, self.host, self.port = rx, host, port
        self._loop: tornado.ioloop.IOLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def start(self) -> ReceiverWeb:
        """Binds at once (OSError when the port is taken), then serves from its thread."""
        sockets = tornado.netutil.bind_sockets(self.port, self.host)
        self.port = sockets[0].getsockname()[1]
        self._thread = threading.Thread(
            target=self._serve, args=(sockets,), name=f"receiver-web:{self.port}", daemon=True
        )
        self._thread.start()
        self._ready.wait(10)
        return self

    def _serve(self, sockets: list) -> None:
        asyncio.set_event_loop(asyncio.new_event_loop())
        self._loop = tornado.ioloop.IOLoop.current()
        live = LivePage(self.rx)
        loop = self._loop
        live.wake = lambda: loop.add_callback(live.changed.notify_all)
        self.rx.watch(live.record)
        server = tornado.httpserver.HTTPServer(self._app(live), xheaders=False)
        server.add_sockets(sockets)
        self._ready.set()
        self._loop.start()
        server.stop()
        self._loop.close(all_fds=True)

    def _app(self, live: LivePage) -> tornado.web.Application:
        names = {self.host, "localhost", "127.0.0.1", "[::1]"} | ({f"[{self.host}]"} if ":" in self.host else set())
        return tornado.web.Application(
            [(r"/", PageHandler, {"live": live}), (r"/stream", StreamHandler, {"live": live})],
            template_path=ASSETS,
            static_path=ASSETS,
            static_handler_class=StaticFiles,
            autoescape="xhtml_escape",
            allowed_hosts=frozenset(f"{h}:{self.port}" for h in names),
            log_function=lambda handler: None,  # the terminal shows events, not page views
        )

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            loop.add_callback(loop.stop)
            thread.join(5)
        self._loop = self._thread = None
