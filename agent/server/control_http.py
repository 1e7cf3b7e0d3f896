"""The control socket's HTTP/1.1 framing (docs/control-api.md): reading one request
at a time from a connection within a deadline (`Reader`: a bounded head, then
exactly Content-Length bytes of body), parsing the request line and headers
strictly, and writing an answer (`response`), or a `Stream` of lines as they
come (`serve_stream`: chunked for HTTP/1.1, close-delimited for 1.0, until the
stream ends or the client goes). What a request means is agent/server/control.py's; a
request that cannot be parsed is a `BadRequest` with the status to answer it with.
"""

from __future__ import annotations

import json
import re
import select
import socket
import time
from http import HTTPStatus
from typing import Any

from agent import __version__

MAX_HEAD = 16 * 1024  # bytes of request line + headers
MAX_BODY = 64 * 1024  # bytes of request body
READ_TIMEOUT = 5.0  # s a client gets to deliver one whole request (head and body)
IDLE_TIMEOUT = 5.0  # s a keep-alive connection may wait between requests
HEAD_END = re.compile(rb"\r?\n\r?\n")


class BadRequest(Exception):
    """A request that cannot be parsed; answered with `status`, then the connection is closed."""

    def __init__(self, status: int, message: str, reason: str):
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason


class ClientGone(Exception):
    """The client closed the connection or missed its deadline: nothing to answer."""


def json_bytes(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8")


def response(status: int, payload: bytes, *, close: bool, extra: dict[str, str] | None = None) -> bytes:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    head = [
        f"HTTP/1.1 {status} {reason}",
        f"Server: eventsink-agent/{__version__}",
        "Content-Type: application/json",
        f"Content-Length: {len(payload)}",
    ]
    head += [f"{k}: {v}" for k, v in (extra or {}).items()]
    if close:
        head.append("Connection: close")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + payload


def send(conn: socket.socket, data: bytes) -> bool:
    try:
        conn.sendall(data)
        return True
    except OSError:
        return False


STREAM_WRITE_TIMEOUT = 5.0  # s a streamed client may take to accept one write before it is dropped
_GONE = select.POLLHUP | select.POLLERR | select.POLLNVAL


class Stream:
    """An answer written as it comes (`GET /v1/deliveries?follow=1`), one line at a time.

    Its producer wakes `wake_fd` (readable) when `take` has lines; `take` answers the lines
    ready now ([] for none) or None once the stream has ended on its side; `close` is called
    once, by the serving thread, when the stream is over for whatever reason."""

    media_type = "application/x-ndjson"

    def wake_fd(self) -> int:
        raise NotImplementedError

    def take(self) -> list[bytes] | None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


def stream_head(media_type: str, chunked: bool) -> bytes:
    head = [
        "HTTP/1.1 200 OK",
        f"Server: eventsink-agent/{__version__}",
        f"Content-Type: {media_type}",
        "Cache-Control: no-store",
        "Connection: close",
    ]
    if chunked:
        head.append("Transfer-Encoding: chunked")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")


def serve_stream(
    conn: socket.socket, stream: Stream, *, chunked: bool, write_timeout: float = STREAM_WRITE_TIMEOUT
) -> None:
    """Write STREAM's lines to CONN as they come, until it ends or the client goes (EOF, an error,
    a write not taken within WRITE_TIMEOUT). Sleeps in poll() between lines: no tick. The
    connection is not reused afterwards."""
    try:
        conn.settimeout(write_timeout)
        if not send(conn, stream_head(stream.media_type, chunked)):
            return
        poller = select.poll()
        poller.register(conn.fileno(), select.POLLIN)
        poller.register(stream.wake_fd(), select.POLLIN)
        while True:
            for fd, events in poller.poll():
                if fd == conn.fileno() and (events & _GONE or not _discard_input(conn)):
                    return  # the client closed (curl -N interrupted, a browser tab gone)
            lines = stream.take()
            if lines is None:
                if chunked:
                    send(conn, b"0\r\n\r\n")
                return
            if lines:
                data = b"".join(lines)
                if not send(conn, b"%x\r\n%s\r\n" % (len(data), data) if chunked else data):
                    return
    finally:
        stream.close()


def _discard_input(conn: socket.socket) -> bool:
    """Read what a streamed client sent (nothing is expected); False at its EOF or an error."""
    try:
        return bool(conn.recv(4096))
    except OSError:
        return False


class Reader:
    """Reads one request at a time from a connection, within a deadline per request."""

    def __init__(self, conn: socket.socket, read_timeout: float, idle_timeout: float):
        self.conn = conn
        self.read_timeout = read_timeout
        self.idle_timeout = idle_timeout
        self.buf = b""
        self.deadline = 0.0

    def _recv(self) -> bytes:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise ClientGone
        self.conn.settimeout(remaining)
        try:
            data = self.conn.recv(65536)
        except (TimeoutError, OSError):
            raise ClientGone from None
        if not data:
            raise ClientGone
        return data

    def read_head(self) -> tuple[str, str, str, dict[str, str]]:
        # Waiting for the first byte of a request may take idle_timeout; the rest read_timeout.
        self.deadline = time.monotonic() + self.idle_timeout
        while not self.buf.lstrip(b"\r\n"):
            self.buf = self._recv()
        self.buf = self.buf.lstrip(b"\r\n")
        self.deadline = time.monotonic() + self.read_timeout
        checked_line = False
        while True:
            end = HEAD_END.search(self.buf)
            if end is not None:
                break
            if not checked_line and b"\n" in self.buf:
                parse_request_line(self.buf.split(b"\n", 1)[0].rstrip(b"\r").decode("latin-1"))
                checked_line = True  # garbage is answered at once, not after the deadline
            if len(self.buf) > MAX_HEAD:
                raise BadRequest(431, f"the request head is larger than {MAX_HEAD} bytes", "head_too_large")
            try:
                self.buf += self._recv()
            except ClientGone:
                if self.buf and time.monotonic() >= self.deadline:
                    raise BadRequest(408, "the request was not complete in time", "timeout") from None
                raise
        head, self.buf = self.buf[: end.start()], self.buf[end.end() :]
        if len(head) > MAX_HEAD:
            raise BadRequest(431, f"the request head is larger than {MAX_HEAD} bytes", "head_too_large")
        return parse_head(head)

    def read_exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            try:
                self.buf += self._recv()
            except ClientGone:
                if time.monotonic() >= self.deadline:
                    raise BadRequest(408, "the request body was not complete in time", "timeout") from None
                raise
        body, self.buf = self.buf[:n], self.buf[n:]
        return body


def parse_request_line(line: str) -> tuple[str, str, str]:
    words = line.split(" ")
    if len(words) != 3 or not words[0].isalpha() or not words[0].isupper() or not words[1]:
        raise BadRequest(400, "malformed request line", "garbage")
    method, target, version = words
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        raise BadRequest(
            505 if version.startswith("HTTP/") else 400, "only HTTP/1.0 and HTTP/1.1 are spoken here", "version"
        )
    if not (target.startswith("/") or target.startswith("http://")):
        raise BadRequest(400, "malformed request target", "garbage")
    return method, target, version


def parse_head(head: bytes) -> tuple[str, str, str, dict[str, str]]:
    lines = [line.rstrip("\r") for line in head.decode("latin-1").split("\n")]
    method, target, version = parse_request_line(lines[0])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip() or " " in name:
            raise BadRequest(400, "malformed header line", "garbage")
        key = name.lower()
        value = value.strip()
        if key == "content-length" and key in headers and headers[key] != value:
            raise BadRequest(400, "conflicting Content-Length headers", "content_length")
        headers[key] = f"{headers[key]}, {value}" if key in headers and key != "content-length" else value
    return method, target, version, headers
