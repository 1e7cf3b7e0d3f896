"""The test receiver's HTTP server (tools/receiver.py's `Receiver` owns one, and
is the `Judge` it hands each request to; this module does not import it):
a threading HTTP/1.1 server, plain or TLS (a refused client certificate is
closed so that the client still reads the alert), keep-alive connections with
an idle limit, reading each request's body (Content-Length or chunked, at
most MAX_BODY), and handing it as a `ReceivedRequest` to the receiver, which
judges and records it.
"""

from __future__ import annotations

import json
import socket
import ssl
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from common.sockets import drop_connections

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


class Judge(Protocol):
    """What the server asks of the receiver it serves (called from the connections' threads)."""

    def judge(self, req: ReceivedRequest) -> tuple[int, dict, float, dict | None]:
        """(status, headers, delay, envelope to record) for one request."""

    def record(self, req: ReceivedRequest, envelope: dict | None) -> None:
        """One request, answered with req.status."""

    def handshake_refused(self, exc: BaseException) -> None:
        """A TLS handshake failed."""

    def server_error(self, exc: BaseException) -> None:
        """Serving a request raised something other than a dropped connection: a receiver bug."""


def lingering_close(conn: socket.socket) -> None:
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


class ReceiverServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, receiver: Judge, family: int, tls: ssl.SSLContext | None):
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
                lingering_close(request)
                self.receiver.handshake_refused(exc)
                return
        super().finish_request(request, client_address)

    def handle_error(self, request, client_address) -> None:
        # A connection reset or dropped mid-request (refuse(), client gone) is nothing to report;
        # anything else is a receiver bug (or a script() that raised): keep it visible.
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            return
        self.receiver.server_error(exc)
        super().handle_error(request, client_address)

    def drop_connections(self) -> None:
        drop_connections(self.connections, self.connections_lock)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT
    # The head and the body of an answer are two writes: with Nagle on, the body waits for the
    # client's delayed ACK (40 ms), which held every keep-alive POST to ~22 a second.
    disable_nagle_algorithm = True
    server: ReceiverServer

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

    def log_message(self, format: str, *args: Any) -> None:  # silence the default stderr log
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
            status, extra, delay, envelope = rx.judge(req)
        if delay > 0 and self.server.closing.wait(delay):
            self.close_connection = True
            return  # refused or stopped while delaying: the connection is dropped, nothing recorded
        if self.server.closing.is_set():
            self.close_connection = True
            return
        req.status = status
        rx.record(req, envelope)
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
