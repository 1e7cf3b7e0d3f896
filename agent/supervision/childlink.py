"""The supervisor's end of the supervisor link: a ROUTER socket the broker and
the workers connect their DEALERs to (formats in docs/internals.md).

Sending never blocks the supervisor: a message to a child that is not
connected (yet, or any more) is reported as not sent, and the caller decides
what to do about it. Receiving hands back (identity, message) pairs; a frame
that is not a link message is counted and logged, never raised.
"""

from __future__ import annotations

import logging
from typing import Any

import zmq

from common.internal import decode, encode
from common.logs import RateLimited

log = logging.getLogger("agent.supervisor")

RECEIVE_HWM = 10000  # reports of many children must never be dropped by the supervisor's socket
LINGER_MS = 200
BAD_MESSAGE_LOG_INTERVAL = 60.0  # s between two lines about messages that are not link messages


class ChildLink:
    def __init__(self, ctx: zmq.Context, endpoint: str):
        sock = ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.ROUTER_HANDOVER, 1)  # a restarted child takes over its identity
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)  # unroutable sends fail instead of vanishing
        sock.setsockopt(zmq.LINGER, LINGER_MS)
        sock.setsockopt(zmq.RCVHWM, RECEIVE_HWM)
        sock.bind(endpoint)
        self.socket = sock
        self.endpoint = endpoint
        self.bad_messages = 0
        self._bad_log = RateLimited(BAD_MESSAGE_LOG_INTERVAL)

    def send(self, identity: bytes, msg: dict[str, Any]) -> bool:
        """Send MSG to the child IDENTITY; False when it is not connected or its queue is full."""
        try:
            self.socket.send_multipart([identity, encode(msg)], zmq.NOBLOCK)
            return True
        except zmq.Again:
            return False
        except zmq.ZMQError as exc:
            if exc.errno == zmq.EHOSTUNREACH:
                return False
            raise

    def receive(self, limit: int = 1000) -> list[tuple[bytes, dict[str, Any]]]:
        """Up to LIMIT waiting messages, without blocking."""
        out: list[tuple[bytes, dict[str, Any]]] = []
        for _ in range(limit):
            try:
                frames = self.socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            if len(frames) != 2:
                self.note_bad(frames[0] if frames else b"?", f"{len(frames) - 1} frames instead of 1")
                continue
            try:
                out.append((frames[0], decode(frames[1])))
            except ValueError as exc:  # orjson.JSONDecodeError is a ValueError
                self.note_bad(frames[0], str(exc)[:120])
        return out

    def note_bad(self, identity: bytes, why: str) -> None:
        """Count a message that is not a usable link message; log the first, then one a minute."""
        self.bad_messages += 1
        if self._bad_log.allow() is not None:
            log.warning(
                "supervisor link: ignored a bad message from %r (%s); %d so far", identity[:40], why, self.bad_messages
            )

    def close(self) -> None:
        self.socket.close(linger=LINGER_MS)
