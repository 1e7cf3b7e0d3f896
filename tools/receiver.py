"""The test receiver: a real HTTP server that takes event sink POSTs.

Owns `Receiver` (used by the tests, the demo and `eventsink-agent receive`):
it checks Basic auth or a bearer token and Standard Webhooks signatures (over
the bytes received, with the agent's own sinks/signing.py), decompresses gzip
bodies, can speak TLS and require a client certificate signed by a given CA,
unpacks bulk envelopes, tracks each node's `seq` (gaps, resets, out-of-order)
and repeated `webhook-id`s, records every request, and can be told how to
answer (status, headers, delay, or refuse connections on its port altogether).
Its checks are tools/receiver_checks.py, what it prints tools/receiver_text.py,
its HTTP server tools/receiver_server.py (to which it is the `Judge` of each
request); the command is tools/receive_command.py.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any, TextIO

from tools.receiver_checks import basic_problem, bearer_problem, gunzip, secret_key, signature_problem
from tools.receiver_server import MAX_BODY, ReceivedRequest, ReceiverServer
from tools.receiver_text import clock, event_line

Script = Callable[[int], "tuple[int, dict[str, str] | None, float]"]
# Called (under the receiver's lock, in a handler thread) with each recorded request, its envelope
# and each event it carried with that event's flags: how the live page (tools/receiver_web.py) learns.
Watcher = Callable[[ReceivedRequest, "dict | None", "list[tuple[dict, list[str]]]"], None]


class _SeqTrack:
    __slots__ = ("last", "count")

    def __init__(self) -> None:
        self.last = 0
        self.count = 0


class Receiver:
    """A real HTTP event receiver in a background thread, on 127.0.0.1 by default."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        username: str | None = None,
        password: str | None = None,
        secret: str | None = None,
        out: TextIO | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        client_ca: str | None = None,
        bearer_token: str | None = None,
    ):
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
        self._server: ReceiverServer | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._watchers: list[Watcher] = []

    # lifecycle -----------------------------------------------------------
    @property
    def url(self) -> str:
        scheme = "https" if self._tls else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}/events"

    @property
    def verifies_signatures(self) -> bool:
        return self._key is not None

    def start(self) -> Receiver:
        self._stopped = False
        self._listen()
        return self

    def stop(self) -> None:
        self._stopped = True
        self._close_listener()

    def __enter__(self) -> Receiver:
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
        server = ReceiverServer((self.host, self.port), self, family, self._tls)
        self.port = server.server_address[1]
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"receiver:{self.port}", daemon=True
        )
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

    def watch(self, fn: Watcher) -> None:
        """Have fn see every request from now on (with no watcher, recording does no extra work)."""
        with self._cond:
            self._watchers.append(fn)

    # waiting -------------------------------------------------------------
    def wait_for(self, pred: Callable[[Receiver], Any], timeout: float = 10.0) -> bool:
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

    def summary_and_problems(self, last: int) -> tuple[dict[str, Any], list[str]]:
        """The summary and the LAST problems, newest first, as of one moment (the live page shows both)."""
        with self._cond:
            return self.summary(), self.problems[-last:][::-1]

    def event_names(self) -> list[str]:
        """The names of the events received so far, in order (a bulk envelope's unpacked)."""
        with self._cond:
            return [e.get("event") for e in self.events]

    # judging a request (handler threads: the server's Judge) -------------------
    def judge(self, req: ReceivedRequest) -> tuple[int, dict, float, dict | None]:
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
                req.problem, req.kind = (
                    "Content-Encoding gzip, but the body is not gzip (or too large unpacked)",
                    "bad_request",
                )
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

    def handshake_refused(self, exc: BaseException) -> None:
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

    def server_error(self, exc: BaseException) -> None:
        with self._cond:
            self.problems.append(f"receiver error: {exc!r:.200}")
            self._cond.notify_all()

    # recording -------------------------------------------------------------
    def record(self, req: ReceivedRequest, envelope: dict | None) -> None:
        with self._cond:
            seen = self._record_locked(req, envelope)
            for watcher in self._watchers:
                watcher(req, envelope, seen)
            self._cond.notify_all()

    def _record_locked(self, req: ReceivedRequest, envelope: dict | None) -> list[tuple[dict, list[str]]]:
        """Records one request; each event it carried, with that event's flags."""
        seen: list[tuple[dict, list[str]]] = []
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
                seen.append((ev, ev_flags))
        return seen

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
