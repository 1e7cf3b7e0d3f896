"""The control socket server: HTTP/1.1 with JSON bodies over an AF_UNIX stream
socket (docs/control-api.md), so `curl --unix-socket SOCK http://agent/v1/status` works.

Owns: binding the socket file (mode 0660, stale-socket replacement, refusal of
a live one), serving connections (keep-alive, bounded bodies; the HTTP framing
itself is agent/server/control_http.py's), the fixed route table built from
`agent.commands.COMMANDS`, and turning results and errors into answers
(success bodies as docs/control-api.md; errors as `CommandError.body()`; never a
traceback). The commands are described in agent/commands/ and carried out by
their actions in agent/server/actions/, one module each.

Concurrency: one short-lived thread per connection, at most `max_connections`
at a time, each with a read deadline; a client that connects and sends
nothing, or sends garbage, only ever holds its own thread, so `status` for
another client is answered at once.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import stat
import struct
import threading
import urllib.parse
from collections import Counter
from typing import Any

import msgspec

from agent.client.errors import CommandError
from agent.commands.registry import COMMANDS
from agent.commands.unit import Command
from agent.server.actions.registry import action_of
from agent.server.actions.unit import BODY, CALLER_UID, RawJSON
from agent.server.control_http import (
    HEAD_END,
    IDLE_TIMEOUT,
    MAX_BODY,
    MAX_HEAD,
    READ_TIMEOUT,
    BadRequest,
    ClientGone,
    Reader,
    Stream,
    json_bytes,
    response,
    serve_stream,
)
from agent.server.control_http import send as send_bytes
from common.logs import RateLimited, suppressed_note
from common.sockets import drop_connections

log = logging.getLogger("agent.control")

MAX_CONNECTIONS = 64
BUSY_READ_TIMEOUT = 0.5  # s the accept thread waits for a refused client's request head
MAX_REQUESTS_PER_CONNECTION = 1000
SOCKET_MODE = 0o660
LOG_EVERY = 60.0  # s between two log lines for the same kind of bad request

# The fixed route table: (command, path regex), built once from the registry.

ROUTES: tuple[tuple[Command, Any], ...] = tuple((c, c.path_pattern()) for c in COMMANDS)


class ControlSocketError(Exception):
    """The control socket cannot be set up (live agent on it, not a socket, no permission, ...)."""


class ControlServer:
    """Serves the control commands of `supervisor` on the unix socket at `path`."""

    def __init__(
        self,
        path: str,
        supervisor: Any,
        *,
        max_connections: int = MAX_CONNECTIONS,
        read_timeout: float = READ_TIMEOUT,
        idle_timeout: float = IDLE_TIMEOUT,
        max_body: int = MAX_BODY,
    ):
        self.path = path
        self.supervisor = supervisor
        self.read_timeout = read_timeout
        self.idle_timeout = idle_timeout
        self.max_body = max_body
        self.counts: Counter[str] = Counter()  # requests, answers by status, bad requests by reason
        self._slots = threading.BoundedSemaphore(max_connections)
        self._listener: socket.socket | None = None
        self._inode: tuple[int, int] | None = None
        self._stopping = threading.Event()
        self._accept_thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._bad_log = RateLimited(LOG_EVERY)  # one kind per reason; used under _lock (several threads)

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Bind the socket (replacing a stale one), make it 0660, serve in the background."""
        if self._listener is not None:
            raise ControlSocketError("the control server is already started")
        clear_stale_socket(self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(self.path)
            os.chmod(self.path, SOCKET_MODE)
            st = os.stat(self.path)
            sock.listen(64)
        except OSError as exc:
            sock.close()
            raise ControlSocketError(f"cannot create the control socket {self.path}: {exc.strerror or exc}") from None
        # accept() blocks without a timeout (an idle agent must not wake): stop() wakes it.
        self._listener = sock
        self._inode = (st.st_dev, st.st_ino)
        self._stopping.clear()
        self._accept_thread = threading.Thread(target=self._accept_loop, name="control-accept", daemon=True)
        self._accept_thread.start()
        log.info("control socket listening on %s", self.path)

    def stop(self) -> None:
        """Stop accepting, drop open connections, close and unlink the socket file."""
        if self._listener is None:
            return
        self._stopping.set()
        _wake(self.path)
        try:
            # Should the wake-up connection fail (socket file gone): on Linux this ends a blocked accept().
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        if self._accept_thread is not None:
            self._accept_thread.join(timeout=5)
        self._listener.close()
        self._listener = None
        drop_connections(self._conns, self._lock)
        try:
            st = os.stat(self.path)
            if (st.st_dev, st.st_ino) == self._inode:
                os.unlink(self.path)
        except OSError:
            pass
        self._inode = None

    def __enter__(self) -> ControlServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------------- connections

    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None
        while not self._stopping.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError as exc:
                if self._stopping.is_set():
                    return
                self._log_bad("accept", f"control socket accept failed: {exc.strerror or exc}")
                self._stopping.wait(0.1)  # e.g. EMFILE: do not spin
                continue
            if self._stopping.is_set():
                conn.close()
                return
            if not self._slots.acquire(blocking=False):
                self._count("refused_busy")
                self._log_bad("busy", "control socket: too many connections, refusing one")
                self._refuse_busy(conn)
                continue
            threading.Thread(target=self._serve, args=(conn,), name="control-conn", daemon=True).start()

    def _refuse_busy(self, conn: socket.socket) -> None:
        """Answer 503 and close. The request head is read first (briefly): a unix socket closed with
        unread data resets the connection, and the client would see no answer at all."""
        try:
            conn.settimeout(BUSY_READ_TIMEOUT)
            seen = b""
            while not HEAD_END.search(seen) and len(seen) < MAX_HEAD:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                seen += chunk
        except OSError:
            pass
        try:
            err = CommandError(503, "the control socket is busy; try again")
            conn.sendall(response(503, json_bytes(err.body()), close=True))
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            conn.close()

    def _serve(self, conn: socket.socket) -> None:
        with self._lock:
            self._conns.add(conn)
        reader = Reader(conn, self.read_timeout, self.idle_timeout)
        caller = peer_uid(conn)
        try:
            for _ in range(MAX_REQUESTS_PER_CONNECTION):
                if self._stopping.is_set():
                    return
                try:
                    method, target, version, headers = reader.read_head()
                    close = version == "HTTP/1.0" or "close" in headers.get("connection", "").lower()
                    body = self._read_body(reader, headers)
                except BadRequest as exc:
                    self._count(f"bad_request:{exc.reason}")
                    self._log_bad(exc.reason, f"control socket: bad request ({exc.message})")
                    self._count(f"status:{exc.status}")
                    send_bytes(
                        conn, response(exc.status, json_bytes(CommandError(exc.status, exc.message).body()), close=True)
                    )
                    return
                self._count("requests")
                status, payload, extra = self.dispatch(method, target, body, caller)
                self._count(f"status:{status}")
                log.debug("control: %s %s -> %d", method, target[:200], status)
                if isinstance(payload, Stream):  # written as it comes, until either side ends it
                    serve_stream(conn, payload, chunked=version == "HTTP/1.1")
                    return
                if not send_bytes(conn, response(status, payload, close=close, extra=extra)) or close:
                    return
        except ClientGone:
            return
        except Exception:  # never let one connection take the server down
            log.exception("control socket: unexpected error serving a connection")
        finally:
            with self._lock:
                self._conns.discard(conn)
            conn.close()
            self._slots.release()

    def _read_body(self, reader: Reader, headers: dict[str, str]) -> bytes:
        if "transfer-encoding" in headers:
            raise BadRequest(411, "chunked request bodies are not supported; send Content-Length", "chunked")
        raw = headers.get("content-length")
        if raw is None:
            return b""
        if not raw.strip().isdigit():
            raise BadRequest(400, "the Content-Length header is not a number", "content_length")
        length = int(raw)
        if length > self.max_body:
            raise BadRequest(413, f"the request body is larger than {self.max_body} bytes", "too_large")
        if headers.get("expect", "").lower() == "100-continue":
            send_bytes(reader.conn, b"HTTP/1.1 100 Continue\r\n\r\n")
        return reader.read_exactly(length)

    # ---------------------------------------------------------------- routing

    def dispatch(
        self, method: str, target: str, body: bytes, caller: int | None = None
    ) -> tuple[int, bytes | Stream, dict[str, str]]:
        """One request (from the client with uid CALLER) -> (status, JSON body bytes or a Stream, extra
        headers). Never raises."""
        try:
            command, params, allowed = _route(method, target)
            if command is None:
                if allowed:
                    err = CommandError(405, f"{method} is not allowed here; use {', '.join(allowed)}")
                    return 405, json_bytes(err.body()), {"Allow": ", ".join(allowed)}
                raise CommandError(404, f"no such resource: {urllib.parse.urlsplit(target).path[:200]}")
            action = action_of(command)
            if action.body is not None:
                params[BODY] = _decode_body(body, action.body)
            else:
                _check_body(body)
            if action.wants_caller:
                params[CALLER_UID] = caller
            result = action.action(self.supervisor, params)
            if isinstance(result, RawJSON):
                return 200, result.encode(), {}
            if isinstance(result, Stream):
                return 200, result, {}
            return 200, json_bytes(result), {}
        except CommandError as exc:
            return exc.status, json_bytes(exc.body()), {}
        except Exception:
            log.exception("control socket: %s %s failed", method, target[:200])
            err = CommandError(500, "the agent could not carry out the command; see the agent's log")
            return 500, json_bytes(err.body()), {}

    def _count(self, key: str) -> None:
        with self._lock:
            self.counts[key] += 1

    def _log_bad(self, reason: str, line: str) -> None:
        with self._lock:
            suppressed = self._bad_log.allow(reason)
        if suppressed is not None:
            log.warning("%s%s", line, suppressed_note(suppressed))


def _wake(path: str) -> None:
    """Connect once to our own socket so a blocked accept() returns now."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(0.5)
            s.connect(path)
    except OSError:
        pass


def _route(method: str, target: str) -> tuple[Command | None, dict[str, str], list[str]]:
    """Find the command for METHOD TARGET in the fixed table; else (None, {}, allowed methods)."""
    if not target.startswith("/"):  # absolute-form: http://agent/v1/status?x=y
        absolute = urllib.parse.urlsplit(target)
        target = (absolute.path or "/") + (f"?{absolute.query}" if absolute.query else "")
    parts = urllib.parse.urlsplit(target)
    matches = [(command, m) for command, pattern in ROUTES if (m := pattern.match(parts.path))]
    if matches:
        # A concrete path wins over a template that also matches it (OpenAPI's rule):
        # DELETE /v1/sinks/S/dead-letters/redrive is a wrong method, not a dead letter named "redrive".
        fewest = min(len(command.fields) for command, _ in matches)
        matches = [(command, m) for command, m in matches if len(command.fields) == fewest]
    for command, m in matches:
        if command.method != method:
            continue
        params = {k: urllib.parse.unquote(v) for k, v in m.groupdict().items()}
        query = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
        for name in command.query:
            if name in query:
                params[name] = query[name][-1]
        return command, params, []
    return None, {}, sorted({command.method for command, _ in matches})


def _check_body(body: bytes) -> None:
    """Commands take their fields from the path; a body, if any, must be a JSON object."""
    if not body.strip():
        return
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        doc = None
    if not isinstance(doc, dict):
        raise CommandError(400, "the request body must be empty or a JSON object")


def _decode_body(body: bytes, body_type: type) -> Any:
    """BODY as the command's Struct (an empty body: every field's default); 400 with one plain line otherwise."""
    try:
        return msgspec.json.decode(body if body.strip() else b"{}", type=body_type)
    except msgspec.ValidationError as exc:
        raise CommandError(400, f"bad request body: {exc}") from None
    except msgspec.DecodeError:
        raise CommandError(400, "the request body must be empty or a JSON object") from None


def peer_uid(conn: socket.socket) -> int | None:
    """The uid of the process at the other end of a unix socket (SO_PEERCRED), None when not told."""
    try:
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except (OSError, AttributeError):
        return None
    return struct.unpack("3i", creds)[1]


def clear_stale_socket(path: str) -> None:
    """Unlink PATH if it is a stale socket of ours (nobody answers, same owner); refuse anything else there."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ControlSocketError(f"cannot check {path}: {exc.strerror or exc}") from None
    if not stat.S_ISSOCK(st.st_mode):
        raise ControlSocketError(f"{path} exists and is not a socket; remove it or set another agent.control_socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        if st.st_uid != os.getuid():
            raise ControlSocketError(f"control socket {path} is left over from another user; remove it") from None
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise ControlSocketError(f"cannot remove the stale control socket {path}: {exc.strerror or exc}") from None
        log.info("removed stale control socket %s", path)
        return
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ControlSocketError(f"cannot check the existing control socket {path}: {exc.strerror or exc}") from None
    finally:
        probe.close()
    raise ControlSocketError(
        f"another agent is already answering on the control socket {path} (in use by another process)"
    )
