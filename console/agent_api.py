"""The console's only way into the agent: the control socket (agent/client/ctl.py's
ControlClient), called on a worker thread so the event loop never blocks, and the
deliveries stream (`GET /v1/deliveries?follow=1`, NDJSON) read line by line, through
http.client here (eventsinkctl's client speaks its one request itself and imports no
http.client, docs/control-api.md)."""

from __future__ import annotations

import http.client
import logging
import socket
import urllib.parse
from collections.abc import Iterator
from typing import Any

from tornado.ioloop import IOLoop

from agent.client.ctl import AgentFailed, ControlClient
from agent.commands.client import Unreachable

log = logging.getLogger("console")
CALL_TIMEOUT = 15.0  # s; the control server itself answers 503 after 10 s


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over an AF_UNIX stream socket (Host: agent), for the deliveries stream."""

    def __init__(self, socket_path: str, timeout: float | None = CALL_TIMEOUT):
        super().__init__("agent", timeout=timeout)
        self.socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class AgentError(Exception):
    """The agent refused (status, its one sentence) or could not be reached (status 0)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class AgentAPI:
    def __init__(self, socket_path: str):
        self.socket_path = socket_path
        self.client = ControlClient(socket_path, CALL_TIMEOUT)

    def _call(self, method: str, path: str, body: Any = None, raw: bool = False) -> Any:
        try:
            reply, answer = self.client.request(method, path, body)
        except Unreachable:
            raise AgentError(0, "the agent does not answer on its control socket") from None
        except AgentFailed as exc:
            raise AgentError(0, f"the agent gave no usable answer: {exc}") from None
        if not reply.ok:
            raise AgentError(reply.status, reply.error)
        return answer if raw else reply.body

    async def call(self, method: str, path: str, body: Any = None, raw: bool = False) -> Any:
        """The decoded answer (RAW: its bytes); AgentError when refused or unreachable."""
        return await IOLoop.current().run_in_executor(None, self._call, method, path, body, raw)

    async def get(self, path: str, **query: Any) -> Any:
        if query:
            path += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        return await self.call("GET", path)

    @staticmethod
    def sink_path(name: str, *rest: str) -> str:
        return "/".join(["/v1/sinks", urllib.parse.quote(name, safe=""), *rest])

    def follow(self) -> DeliveryStream:
        return DeliveryStream(self.socket_path)


class DeliveryStream:
    """One open `GET /v1/deliveries?follow=1`; `lines()` yields each decoded delivery (blocking)."""

    def __init__(self, socket_path: str):
        self.conn = UnixHTTPConnection(socket_path, timeout=None)

    def lines(self) -> Iterator[bytes]:
        """Each line of the stream as it came (one JSON object): passed on undecoded, decoded only to filter."""
        self.conn.request("GET", "/v1/deliveries?follow=1", headers={"Accept": "application/x-ndjson"})
        resp = self.conn.getresponse()
        if resp.status != 200:
            raise AgentError(resp.status, f"the agent answered the deliveries stream with HTTP {resp.status}")
        while True:
            line = resp.readline()
            if not line:
                return
            line = line.strip()
            if line.startswith(b"{") and line.endswith(b"}"):
                yield line

    def close(self) -> None:
        sock = self.conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes the reading thread
            except OSError:
                pass
        self.conn.close()
