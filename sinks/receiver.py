"""The test receiver: a real HTTP server that takes event sink POSTs.

Owns `Receiver` (used by the tests, the demo and `eventsink-agent receive`):
it checks Basic auth or a bearer token and Standard Webhooks signatures (over
the bytes received), decompresses gzip bodies, can speak TLS and require a
client certificate signed by a given CA, unpacks bulk envelopes, tracks each node's `seq` (gaps, resets, out-of-order) and repeated
`webhook-id`s, records every request, and can be told how to answer
(status, headers, delay, or refuse connections on its port altogether).
What it prints is sinks/receiver_text.py; the command is sinks/receive_command.py.
"""

from __future__ import annotations

import json
import signal
import socket
import ssl
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TextIO

from common.sockets import drop_connections
from sinks.receiver_checks import basic_problem, bearer_problem, gunzip, secret_key, signature_problem
from sinks.receiver_text import clock, event_line

MAX_BODY = 64 * 1024 * 1024  # a larger body is answered 413
IDLE_TIMEOUT = 60.0  # s an idle keep-alive connection stays open


@dataclass
class ReceivedRequest:
    """One HTTP request as received, and how it was answered."""

    t: float  # time.monotonic() at arrival
    method: str
    path: str
    headers: dict[str, str]  # lowercase keys
    body: bytes  # as received (a signature covers these bytes)
    status: int = 0  # the status answered
    problem: str | None = None  # why it was refused, when it was
    kind: str = ""  # "" for a good one, else "auth", "signature" or "bad_request"
    content: bytes | None = None  # the body decompressed, when it came with Content-Encoding: gzip

    def json(self) -> Any:
        return json.loads(self.body if self.content is None else self.content)


Script = Callable[[int], "tuple[int, dict[str, str] | None, float]"]


def _lingering_close(conn: socket.socket) -> None:
    """Close a refused TLS connection so that the client reads the alert. TLS 1.3 refuses a missing
    client certificate after the client's side of the handshake, when the client may already have
    sent its request: closing with that request unread would reset the connection, and the reset
    would discard the alert before the client reads it."""
    try:
        conn.shutdown(socket.SHUT_WR)  # the alert is already out; then FIN
        conn.settimeout(1.0)
        for _ in range(64):  # read (and drop) what the client sent, until it closes
            if not socket.socket.recv(conn, 65536):
                break
    except OSError:
        pass
    finally:
        conn.close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, receiver: "Receiver", family: int, tls: ssl.SSLContext | None):
        self.address_family = family
        self.receiver = receiver
        self.tls = tls
        self.closing = threading.Event()  # set by refuse()/stop(): answers in progress are dropped
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def finish_request(self, request, client_address):
        # Runs in the connection's own thread: the TLS handshake never blocks the accept loop.
        if self.tls is not None:
            request.settimeout(10)
            request = self.tls.wrap_socket(request, server_side=True, do_handshake_on_connect=False)
            try:
                request.do_handshake()
            except (OSError, ssl.SSLError) as exc:
                _lingering_close(request)
                self.receiver._handshake_refused(exc)
                return
        super().finish_request(request, client_address)

    def handle_error(self, request, client_address) -> None:
        # A connection reset or dropped mid-request (refuse(), client gone) is nothing to report;
        # anything else is a receiver bug (or a script() that raised): keep it visible.
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            return
        with self.receiver._cond:
            self.receiver.problems.append(f"receiver error: {exc!r:.200}")
            self.receiver._cond.notify_all()
        super().handle_error(request, client_address)

    def drop_connections(self) -> None:
        drop_connections(self.connections, self.connections_lock)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT
    # The head and the body of an answer are two writes: with Nagle on, the body waits for the
    # client's delayed ACK (40 ms), which held every keep-alive POST to ~22 a second.
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.server.connections_lock:
                self.server.connections.discard(self.connection)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence the default stderr log
        pass

    def read_body(self) -> bytes | None:
        """The request body (Content-Length or chunked); None when too large or malformed."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts, total = [], 0
            for _ in range(1_000_000):
                line = self.rfile.readline(1024)
                try:
                    size = int(line.split(b";")[0].strip(), 16)
                except ValueError:
                    return None
                if size == 0:
                    for _ in range(100):  # trailers up to the empty line
                        if self.rfile.readline(8192) in (b"\r\n", b"\n", b""):
                            break
                    return b"".join(parts)
                total += size
                if total > MAX_BODY:
                    return None
                parts.append(self.rfile.read(size))
                self.rfile.readline(8)
            return None
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            return None
        if length < 0 or length > MAX_BODY:
            return None
        return self.rfile.read(length) if length else b""

    def do_POST(self) -> None:
        self.serve()

    def do_PUT(self) -> None:
        self.serve()

    def do_GET(self) -> None:
        self.serve()

    def do_DELETE(self) -> None:
        self.serve()

    def serve(self) -> None:
        arrived = time.monotonic()
        body = self.read_body()
        headers = {k.lower(): v for k, v in self.headers.items()}
        req = ReceivedRequest(arrived, self.command, self.path, headers, body or b"")
        rx = self.server.receiver
        if body is None:
            self.close_connection = True
            status, extra, delay, envelope = 413, {}, 0.0, None
            req.problem, req.kind = "body too large or malformed", "bad_request"
        else:
            status, extra, delay, envelope = rx._judge(req)
        if delay > 0 and self.server.closing.wait(delay):
            self.close_connection = True
            return  # refused or stopped while delaying: the connection is dropped, nothing recorded
        if self.server.closing.is_set():
            self.close_connection = True
            return
        req.status = status
        rx._record(req, envelope)
        reply = json.dumps({"ok": 200 <= status < 300} if req.problem is None else {"error": req.problem}).encode()
        try:
            self.send_response(status)
            for k, v in (extra or {}).items():
                self.send_header(k, str(v))
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(reply)
        except OSError:
            self.close_connection = True


class _SeqTrack:
    __slots__ = ("last", "count")

    def __init__(self) -> None:
        self.last = 0
        self.count = 0


class Receiver:
    """A real HTTP event receiver in a background thread, on 127.0.0.1 by default."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, username: str | None = None,
                 password: str | None = None, secret: str | None = None, out: TextIO | None = None,
                 tls_cert: str | None = None, tls_key: str | None = None, client_ca: str | None = None,
                 bearer_token: str | None = None):
        """CLIENT_CA: require a client certificate signed by it (TLS only); BEARER_TOKEN: require
        `Authorization: Bearer BEARER_TOKEN` (instead of Basic auth)."""
        self.host = host
        self.port = port
        self.username = username or None
        self.password = password or ""
        self.bearer_token = bearer_token or None
        self._key = secret_key(secret) if secret else None
        self.out = out
        self._tls: ssl.SSLContext | None = None
        if client_ca and not tls_cert:
            raise ValueError("a client certificate can only be required over TLS: give a certificate and key")
        if tls_cert:
            self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._tls.load_cert_chain(tls_cert, tls_key)
            if client_ca:
                self._tls.verify_mode = ssl.CERT_REQUIRED  # no certificate, or another CA's: refused at the handshake
                self._tls.load_verify_locations(cafile=client_ca)
        self.client_ca = client_ca or None
        self.requests: list[ReceivedRequest] = []
        self.events: list[dict] = []
        self.problems: list[str] = []
        self._cond = threading.Condition(threading.RLock())
        self._status, self._headers, self._delay = 200, {}, 0.0
        self._script: Script | None = None
        self._refuse: Callable[[dict], int | None] | None = None
        self._index = 0
        self._seq: dict[tuple[str, str], _SeqTrack] = {}
        self._seen_ids: set[str] = set()
        self._by_event: Counter[str] = Counter()
        self._counts: Counter[str] = Counter()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False

    # lifecycle -----------------------------------------------------------
    @property
    def url(self) -> str:
        scheme = "https" if self._tls else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}/events"

    @property
    def verifies_signatures(self) -> bool:
        return self._key is not None

    def start(self) -> "Receiver":
        self._stopped = False
        self._listen()
        return self

    def stop(self) -> None:
        self._stopped = True
        self._close_listener()

    def __enter__(self) -> "Receiver":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def refuse(self) -> None:
        """Close the listening socket and drop open connections: connections are refused."""
        self._close_listener()

    def accept(self) -> None:
        """Listen again, on the same port."""
        if self._server is None and not self._stopped:
            self._listen()

    def _listen(self) -> None:
        if self._server is not None:
            return
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        server = _Server((self.host, self.port), self, family, self._tls)
        self.port = server.server_address[1]
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                  name=f"receiver:{self.port}", daemon=True)
        self._server, self._thread = server, thread
        thread.start()

    def _close_listener(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.closing.set()
        server.shutdown()
        server.server_close()
        server.drop_connections()
        if thread is not None:
            thread.join(5)

    # behaviour -----------------------------------------------------------
    def respond(self, status: int = 200, headers: dict[str, str] | None = None, delay: float = 0.0) -> None:
        """How to answer the following requests (after auth/signature/JSON checks pass)."""
        with self._cond:
            self._status, self._headers, self._delay = status, dict(headers or {}), delay
            self._script = None

    def script(self, fn: Script | None) -> None:
        """fn(request_index) -> (status, headers, delay); overrides respond() until respond() is called."""
        with self._cond:
            self._script = fn

    def reject_events(self, fn: Callable[[dict], int | None] | None) -> None:
        """fn(envelope) -> a status to refuse that POST with (a bulk envelope: look inside), or None to answer
        as usual: a receiver whose schema does not know some event (tests of dead letters)."""
        with self._cond:
            self._refuse = fn

    # waiting -------------------------------------------------------------
    def wait_for(self, pred: Callable[["Receiver"], Any], timeout: float = 10.0) -> bool:
        with self._cond:
            return bool(self._cond.wait_for(lambda: pred(self), timeout))

    def wait_events(self, n: int, timeout: float = 10.0) -> bool:
        return self.wait_for(lambda r: len(r.events) >= n, timeout)

    def summary(self) -> dict[str, Any]:
        with self._cond:
            return {
                "requests": len(self.requests),
                "events": len(self.events),
                "by_event": dict(self._by_event),
                "gaps": self._counts["gaps"],
                "missing": self._counts["missing"],
                "resets": self._counts["resets"],
                "out_of_order": self._counts["out_of_order"],
                "duplicates": self._counts["duplicates"],
                "auth_failures": self._counts["auth_failures"],
                "bad_signatures": self._counts["bad_signatures"],
                "bad_requests": self._counts["bad_requests"],
                "tls_refused": self._counts["tls_refused"],
                "problems": len(self.problems),
            }

    def event_names(self) -> list[str]:
        with self._cond:
            return [e.get("event") for e in self.events]

    # judging a request (handler threads) -----------------------------------
    def _judge(self, req: ReceivedRequest) -> tuple[int, dict, float, dict | None]:
        """(status, headers, delay, envelope-to-record) for one request."""
        with self._cond:
            index = self._index
            self._index += 1
            script = self._script
            status, headers, delay = self._status, dict(self._headers), self._delay
        if script is not None:
            status, headers, delay = script(index)
            headers = dict(headers or {})
        if req.method != "POST":
            req.problem, req.kind = f"method {req.method} not allowed: POST events here", "bad_request"
            return 405, {"Allow": "POST"}, delay, None
        for kind, check in (("auth", self._check_auth), ("signature", self._check_signature)):
            problem = check(req)
            if problem:
                req.problem, req.kind = problem, kind
                return 401, {"WWW-Authenticate": 'Basic realm="events"'} if kind == "auth" else {}, delay, None
        encoding = req.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("identity", "gzip"):
            req.problem, req.kind = f"Content-Encoding {encoding!r:.40} not supported (gzip is)", "bad_request"
            return 415, {"Accept-Encoding": "gzip"}, delay, None
        if encoding == "gzip":
            req.content = gunzip(req.body, MAX_BODY)
            if req.content is None:
                req.problem, req.kind = "Content-Encoding gzip, but the body is not gzip (or too large unpacked)", "bad_request"
                return 400, {}, delay, None
        try:
            envelope = req.json()
        except ValueError:
            envelope = None
        if not isinstance(envelope, dict) or not isinstance(envelope.get("event"), str):
            req.problem, req.kind = "body is not a JSON event envelope", "bad_request"
            return 400, {}, delay, None
        if envelope["event"] == "eventsink_bulk" and not (
            isinstance(envelope.get("data"), list) and all(isinstance(e, dict) for e in envelope["data"])
        ):
            req.problem, req.kind = "eventsink_bulk without a list of envelopes in data", "bad_request"
            return 400, {}, delay, None
        refuse = self._refuse
        if refuse is not None and (refused := refuse(envelope)):
            req.problem, req.kind = f"refused by this receiver's rule (HTTP {refused})", "refused"
            return refused, {}, delay, None
        return status, headers, delay, envelope

    def _check_auth(self, req: ReceivedRequest) -> str | None:
        if self.bearer_token is not None:
            return bearer_problem(req.headers, self.bearer_token)
        if self.username is None:
            return None
        return basic_problem(req.headers, self.username, self.password)

    def _handshake_refused(self, exc: BaseException) -> None:
        """A TLS handshake failed; with a client CA that is usually a client without a (good) certificate."""
        if self.client_ca is None:
            return  # e.g. a client that does not trust our certificate: its side reports it
        reason = getattr(exc, "reason", None) or type(exc).__name__
        with self._cond:
            self._counts["tls_refused"] += 1
            self.problems.append(f"TLS handshake refused: {reason}")
            self._print(f"{clock()} ! TLS handshake refused: {reason}")
            self._cond.notify_all()

    def _check_signature(self, req: ReceivedRequest) -> str | None:
        return None if self._key is None else signature_problem(req.headers, req.body, self._key)

    # recording -------------------------------------------------------------
    def _record(self, req: ReceivedRequest, envelope: dict | None) -> None:
        with self._cond:
            self.requests.append(req)
            if req.problem is not None:
                self._counts[{"auth": "auth_failures", "signature": "bad_signatures"}.get(req.kind, "bad_requests")] += 1
                self.problems.append(f"{req.method} {req.path}: {req.status} {req.problem}")
                self._print(f"{clock()} ! {req.status} {req.problem}")
            elif envelope is not None and 200 <= req.status < 300:
                flags: list[str] = []
                wid = req.headers.get("webhook-id")
                duplicate = bool(wid) and wid in self._seen_ids
                if wid:
                    if duplicate:
                        self._counts["duplicates"] += 1
                        self.problems.append(f"duplicate webhook-id {wid}")
                        flags.append("duplicate")
                    self._seen_ids.add(wid)
                inner = envelope["data"] if envelope["event"] == "eventsink_bulk" else [envelope]
                for i, ev in enumerate(inner):
                    ev_flags = self._track_seq(req.path, ev, duplicate) + flags
                    if envelope is not ev:
                        ev_flags.append(f"bulk {i + 1}/{len(inner)}")
                    self.events.append(ev)
                    self._by_event[str(ev.get("event"))] += 1
                    self._print(event_line(len(self.events), ev, ev_flags))
            self._cond.notify_all()

    def _track_seq(self, path: str, ev: dict, duplicate: bool = False) -> list[str]:
        """Flags for one event's seq, tracked per (node, URL path): reset, gap, out of order.

        A redelivery (repeated webhook-id) with an old seq is a duplicate, not also out of order."""
        seq, node = ev.get("seq"), ev.get("node")
        if not isinstance(seq, int) or isinstance(seq, bool):
            return ["no-seq"]
        track = self._seq.setdefault((str(node), path), _SeqTrack())
        flags: list[str] = []
        if duplicate and track.count and 1 < seq <= track.last:
            return flags
        if seq == 1:
            if track.count:
                self._counts["resets"] += 1
                self.problems.append(f"seq reset from node {node} after seq {track.last}")
                flags.append("reset")
        elif track.count and seq > track.last + 1:
            missing = seq - track.last - 1
            self._counts["gaps"] += 1
            self._counts["missing"] += missing
            gap = f"{track.last + 1}" if missing == 1 else f"{track.last + 1}-{seq - 1}"
            self.problems.append(f"seq gap from node {node}: missing {gap}")
            flags.append(f"gap: missing {gap}")
        elif track.count and seq <= track.last:
            self._counts["out_of_order"] += 1
            self.problems.append(f"seq out of order from node {node}: {seq} after {track.last}")
            flags.append(f"out of order after {track.last}")
        track.last = seq if seq == 1 else max(seq, track.last)
        track.count += 1
        return flags

    def _print(self, line: str) -> None:
        if self.out is None:
            return
        try:
            self.out.write(line + "\n")
            self.out.flush()
        except (OSError, ValueError):
            pass
