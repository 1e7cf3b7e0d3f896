"""The followers of `GET /v1/deliveries?follow=1[&sink=NAME]` (docs/control-api.md):
`Follower`, one client's bounded queue of NDJSON lines, and `DeliveryFeed`,
which keeps them on the supervisor's main loop and tells the workers when to
stream.

A worker streams its POSTs as sent only while the supervisor has told it to
(`FollowDeliveries`, common/link.py): the feed tells a sink's worker `on` when
the first follower that wants the sink arrives, again whenever the sink has a
new worker (a report with another pid), and `off` once no follower wants it
any more. With nobody following, nothing here runs but an emptiness check per
loop turn.

The main loop never waits for a follower: it appends each line to the
follower's queue and wakes its serving thread through a socket pair (once per
burst). A follower whose queue is full (MAX_QUEUED_BYTES unsent: a client that
does not read; about half a second of one sink flat out) is dropped: its stream ends, as a slow client's connection
would, rather than skip lines unnoticed. A follower's serving thread marks it
ended when the client goes and wakes the main loop, which forgets it.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import msgspec

from agent.client.errors import CommandError
from agent.server.control_http import Stream
from common.internal import worker_identity
from common.link import DeliveriesStreamed, FollowDeliveries

log = logging.getLogger("agent.control")

MAX_QUEUED_BYTES = 8 * 1024 * 1024  # unsent bytes a follower may have before it is dropped
MAX_FOLLOWERS = 16  # open streams at once; more are refused (503)


class Follower(Stream):
    """One client's stream: lines in from the main loop (`offer`), out to its serving thread (`take`)."""

    def __init__(self, sink: str | None, on_close: Callable[[], None], max_queued: int = MAX_QUEUED_BYTES):
        self.sink = sink  # None: every sink
        self._on_close = on_close  # wakes the main loop, which then forgets this follower
        self._max = max_queued
        self._lines: deque[bytes] = deque()
        self._queued = 0  # bytes in _lines
        self._lock = threading.Lock()
        self._waker, self._woken = socket.socketpair()
        self._waker.setblocking(False)
        self._woken.setblocking(False)
        self._signalled = False
        self.dropped = False  # its queue overflowed
        self.closed = False  # its serving thread is done with it

    def wants(self, sink: str) -> bool:
        return self.sink is None or self.sink == sink

    # ---------------------------------------------------------------- the main loop's side

    def offer(self, line: bytes) -> None:
        """Queue one line; drop the follower instead once MAX_QUEUED_BYTES would wait. Never blocks."""
        with self._lock:
            if self.closed or self.dropped:
                return
            if self._queued + len(line) > self._max:
                self.dropped = True
                self._lines.clear()
                self._queued = 0
            else:
                self._lines.append(line)
                self._queued += len(line)
            if not self._signalled:
                self._signalled = True
                try:
                    self._waker.send(b"!")
                except OSError:
                    pass  # its buffer is full: the thread is awake anyway

    # ---------------------------------------------------------------- the serving thread's side

    def wake_fd(self) -> int:
        return self._woken.fileno()

    def take(self) -> list[bytes] | None:
        with self._lock:
            try:
                while self._woken.recv(4096):
                    pass
            except OSError:  # BlockingIOError: drained
                pass
            self._signalled = False
            if self.dropped:
                return None
            lines = list(self._lines)
            self._lines.clear()
            self._queued = 0
            return lines

    def close(self) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
            self._lines.clear()
            self._queued = 0
            self._waker.close()
            self._woken.close()
        self._on_close()


class DeliveryFeed:
    """The open follow streams and which workers stream for them (on the main loop)."""

    def __init__(self, fleet: Any) -> None:
        self.fleet = fleet  # its link, once bound, and its sinks
        self.followers: list[Follower] = []
        self._told: dict[str, int] = {}  # sink -> pid of the worker told to stream
        self._drops = 0

    def follow(self, sink: str | None, wake: Callable[[], None]) -> Follower:
        """A new follower of SINK (None: all); its end wakes the loop with WAKE."""
        if len(self.followers) >= MAX_FOLLOWERS:
            raise CommandError(503, f"{MAX_FOLLOWERS} clients already follow the deliveries; try again later")
        follower = Follower(sink, wake)
        self.followers.append(follower)
        self.tell_workers()
        return follower

    def wanted(self, sink: str) -> bool:
        return any(f.wants(sink) for f in self.followers)

    def streamed(self, identity: bytes, msg: DeliveriesStreamed) -> None:
        """A worker's completed POSTs: one NDJSON line each, with "sink" added, to each follower of it."""
        if identity != worker_identity(msg.sink):
            self.fleet.link.note_bad(identity, "deliveries streamed for another sink")
            return
        targets = [f for f in self.followers if f.wants(msg.sink)]
        for entry in msg.deliveries:
            line = msgspec.json.encode({"sink": msg.sink, **msgspec.structs.asdict(entry)}) + b"\n"
            for follower in targets:
                follower.offer(line)

    def on_report(self, child: Any, report: Any) -> None:
        """A worker's report: a new worker of a followed sink is told to stream; one that still
        streams for nobody (an `off` it missed) is told to stop."""
        if self.wanted(child.name):
            if self._told.get(child.name) != report.pid:
                self._tell(child.name, report.pid, True)
        elif report.streaming:
            self._tell(child.name, report.pid, False)

    def prune(self) -> None:
        """Forget the followers that ended (the loop, each turn); stop workers nobody follows now."""
        if not self.followers:
            return
        gone = [f for f in self.followers if f.closed or f.dropped]
        if not gone:
            return
        for follower in gone:
            if follower.dropped:
                self._drops += 1
                log.warning("control: dropped a deliveries follower that did not keep up (%d so far)", self._drops)
        self.followers = [f for f in self.followers if not (f.closed or f.dropped)]
        self.tell_workers()

    def tell_workers(self) -> None:
        for name, child in self.fleet.sinks.items():
            pid = child.pid
            if self.wanted(name):
                if pid is not None and self._told.get(name) != pid:
                    self._tell(name, pid, True)
            elif name in self._told:
                self._tell(name, pid, False)
        for name in [n for n in self._told if n not in self.fleet.sinks]:
            del self._told[name]

    def _tell(self, name: str, pid: int | None, on: bool) -> None:
        msg = msgspec.to_builtins(FollowDeliveries(on=on))
        sent = self.fleet.link is not None and self.fleet.link.send(worker_identity(name), msg)
        if on and sent and pid is not None:
            self._told[name] = pid
        elif not on:
            self._told.pop(name, None)  # a missed `off` is sent again on its next report (`streaming`)
