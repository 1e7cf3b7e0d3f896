"""A frozen copy of bus/publisher.py as it was before numbered publishing (the baseline of the
bench row "Publisher cost per event", tests/bench/publisher_cost.py: never edit it to follow the
real one). What follows is its original docstring.

The bus client for conference processes: `Publisher` sends events to the agent
and keeps them while the agent is not listening.

The public contract is the frames, not this class (docs/bus.md); any ZeroMQ
client that sends them works. Connect a PUB socket to the agent's
`publish_endpoint` (default `ipc:///run/eventsink-agent/publish.sock`; the
process must be in the agent's group to open the socket) and send two-frame
messages:

    frame 1: the event name, UTF-8          b"participant_connected"
    frame 2: one JSON object, UTF-8         {"event": "participant_connected",
                                             "time": 1700000000.25,
                                             "data": {"uuid": "0b8e...", ...}}

- `event` must equal frame 1 and be one of the eight bus events
  (conference_started/updated/ended, participant_connected/updated/disconnected,
  participant_media_stream_window, participant_media_streams_destroyed);
  `eventsink_*` names are the agent's own and are rejected.
- `time` is a Unix time (number); `data` is an object with the fields of
  docs/events.md: `name` is required for conference events, `uuid` for the others;
  known fields must have their documented type; extra fields are forwarded.
- The payload may be at most `agent.max_message_kb` KiB.
- A rejected message is counted and logged by the agent; the sender gets no
  answer (PUB/SUB has none).

What a bare PUB socket risks: ZeroMQ drops everything it is given before the
agent's subscription has reached it (a process started before the agent, or
before the agent's package was installed: all of it), everything past its
send high-water mark, and what was on the wire or inside a broker that is
killed. A bare PUB cannot tell any of this happened.

`Publisher` closes the first two holes. Its XPUB socket (a PUB that also
receives the subscriber's subscribe and unsubscribe frames) tells it whether
the agent is subscribed; while it is not (not started yet, or stopping: on
SIGTERM the broker withdraws its READY_TOPIC subscription first, then journals
what is already on its way), `publish` keeps the events in memory, in order, up to `buffer_max`
(then the oldest go, counted in `dropped`), and sends them first once the
agent subscribes again. ZeroMQ's own queue to a connected agent is kept across
the agent's restarts, so what was handed to it while the agent was away goes
to the next broker. What still goes: what a broker killed with `kill -9` had
read but not yet journaled (a few events; PUB/SUB has no acknowledgement, so
no client can tell which), and whatever `close` could not send in its timeout
(left in `pending`).

There is no background thread: the subscription frames are read (without
waiting) inside `publish` (at most every SUBSCRIPTION_CHECK_SECONDS), `pending`,
`flush` and `wait_ready`, and the kept events go out at the first of those
calls after the agent has subscribed. A process that may fall silent with
events kept should call `flush(0)` from its own loop now and then, and
`close()` (or leave the `with` block) before it exits:

    with Publisher("ipc:///run/eventsink-agent/publish.sock") as pub:
        pub.publish("conference_started", {"name": "meet.alice"})
        ...
    # leaving the block waits up to 5 s for the agent; pub.pending, pub.dropped say what was not sent

The agent is the only subscriber on its publish endpoint (it holds a lock
before binding), so "subscribed" is one set of topics: a subscribe frame adds
its topic, an unsubscribe removes it. The broker subscribes to everything
(b"") and to READY_TOPIC, a topic no event has; a graceful stop unsubscribes
only READY_TOPIC. Bare PUB sockets still match b"" and keep queueing for the
next broker (an unsubscribe of everything would make them drop), while a
Publisher reads the withdrawal as "the agent is stopping" and keeps its events
until READY_TOPIC comes back; so the broker's drain ends quiet, with nothing of
ours in transit. A subscriber that never announces READY_TOPIC (a plain SUB on
b"") counts as subscribed as long as it is. The socket is in XPUB_MANUAL mode: the
subscriptions ZeroMQ filters on change only when this class applies a frame,
never in the middle of a send, so an event is either sent (into ZeroMQ's queue
for the agent) or kept here, never silently filtered out.
"""

from __future__ import annotations

import time as _time
from collections import deque
from typing import Any

import orjson
import zmq

# The broker subscribes to this topic beside b"" and withdraws it first when it stops gracefully
# (no event's name starts with a NUL byte, so nothing is ever sent on it).
READY_TOPIC = b"\x00eventsink-agent ready"
SUBSCRIPTION_CHECK_SECONDS = 0.001  # publish reads subscription frames at most this often (a recv costs a syscall)
FLUSH_POLL_SECONDS = 0.01  # flush/wait_ready wait this long at most between two checks
_SEND_FLAGS = zmq.NOBLOCK
_MORE_FLAGS = zmq.NOBLOCK | zmq.SNDMORE


class Publisher:
    """One connection to the agent's bus; not thread-safe (one per thread)."""

    def __init__(self, endpoint: str, *, buffer_max: int = 100_000, sndhwm: int = 1_000_000):
        if buffer_max < 1:
            raise ValueError("buffer_max must be at least 1")
        self.endpoint = endpoint
        self.buffer_max = buffer_max
        self.dropped = 0  # events dropped because more than buffer_max were kept (the oldest first)
        self._kept: deque[tuple[bytes, bytes]] = deque()  # (topic, payload), oldest first
        self._topics: set[bytes] = set()  # what the agent is subscribed to; empty = not subscribed
        self._stopping = False  # the agent withdrew READY_TOPIC: it is stopping, keep everything
        self._open = False  # events may go to ZeroMQ: subscribed, and the agent is not stopping
        self._next_check = 0.0
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.XPUB)
        self._sock.setsockopt(zmq.SNDHWM, sndhwm)
        # Subscriptions change when we apply them (see the module docstring), and a full queue
        # says so (EAGAIN) instead of dropping: the event is then kept and counted here.
        self._sock.setsockopt(zmq.XPUB_MANUAL, 1)
        self._sock.setsockopt(zmq.XPUB_NODROP, 1)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.connect(endpoint)

    # ------------------------------------------------------------ public API

    @property
    def subscribed(self) -> bool:
        """Whether the agent was subscribed (and not stopping) when the frames were last read."""
        return self._open

    @property
    def pending(self) -> int:
        """Events kept, not yet handed to ZeroMQ (sending them first if the agent has subscribed)."""
        if not self._sock.closed:
            self._check_subscriptions()
            self._send_kept()
        return len(self._kept)

    def publish(self, event: str, data: dict[str, Any], time: float | None = None) -> None:
        """Send EVENT with DATA, stamped TIME (now when None), or keep it while the agent is not
        subscribed. Never blocks."""
        payload = orjson.dumps({"event": event, "time": _time.time() if time is None else time, "data": data})
        topic = event.encode("utf-8")
        now = _time.monotonic()
        if now >= self._next_check:
            self._next_check = now + SUBSCRIPTION_CHECK_SECONDS
            self._check_subscriptions()
            if self._kept:
                self._send_kept()
        if self._open and not self._kept:
            try:
                self._sock.send(topic, _MORE_FLAGS)
                self._sock.send(payload, _SEND_FLAGS)
                return
            except zmq.Again:
                pass  # ZeroMQ's queue is full (a stalled agent): keep it, in order, behind nothing
        self._keep(topic, payload)

    def send_frames(self, frames: list[bytes]) -> None:
        """Send raw FRAMES as they are, at once (for tests of malformed input; never kept, so
        dropped by ZeroMQ while the agent is not subscribed)."""
        now = _time.monotonic()
        if now >= self._next_check:
            self._next_check = now + SUBSCRIPTION_CHECK_SECONDS
            self._check_subscriptions()
        self._sock.send_multipart(frames, _SEND_FLAGS)

    def wait_ready(self, timeout: float) -> bool:
        """Wait up to TIMEOUT seconds until the agent has subscribed; True when it has."""
        return self._wait(timeout, lambda: self._open)

    def flush(self, timeout: float) -> bool:
        """Wait up to TIMEOUT seconds for the agent to take every kept event; True once nothing is pending."""
        return self._wait(timeout, lambda: not self._kept)

    def close(self, timeout: float = 5.0) -> bool:
        """Flush, then give ZeroMQ the rest of TIMEOUT to hand its queue over, and close.
        True when nothing was left kept here (`pending` then says how many were)."""
        if self._sock.closed:
            return not self._kept
        deadline = _time.monotonic() + max(0.0, timeout)
        flushed = self.flush(timeout)
        linger_ms = int(max(0.0, deadline - _time.monotonic()) * 1000)
        self._sock.close(linger=linger_ms)
        self._ctx.term()
        return flushed

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------ internals

    def _keep(self, topic: bytes, payload: bytes) -> None:
        if len(self._kept) >= self.buffer_max:
            self._kept.popleft()
            self.dropped += 1
        self._kept.append((topic, payload))

    def _check_subscriptions(self) -> None:
        """Apply every subscription frame ZeroMQ holds, without waiting."""
        sock = self._sock
        while True:
            try:
                frame = sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            kind, topic = frame[:1], frame[1:]
            # XPUB_MANUAL: the frame's pipe is subscribed (or not) only once we say so, right now.
            if kind == b"\x01":
                sock.setsockopt(zmq.SUBSCRIBE, topic)
                self._topics.add(topic)
                if topic == READY_TOPIC:
                    self._stopping = False
            elif kind == b"\x00":
                sock.setsockopt(zmq.UNSUBSCRIBE, topic)
                self._topics.discard(topic)
                if topic == READY_TOPIC:
                    self._stopping = True
            self._open = bool(self._topics) and not self._stopping

    def _send_kept(self) -> None:
        """Hand the kept events to ZeroMQ, oldest first, while subscribed and ZeroMQ takes them."""
        kept, sock = self._kept, self._sock
        while kept and self._open:
            topic, payload = kept[0]
            try:
                sock.send(topic, _MORE_FLAGS)
            except zmq.Again:
                return
            # Not EAGAIN here: XPUB checks its high-water mark at a message's first frame only.
            sock.send(payload, _SEND_FLAGS)
            kept.popleft()

    def _wait(self, timeout: float, done) -> bool:
        """Read subscriptions and send kept events until DONE() or TIMEOUT seconds have passed."""
        deadline = _time.monotonic() + max(0.0, timeout)
        while True:
            self._check_subscriptions()
            self._send_kept()
            if done():
                return True
            remaining = deadline - _time.monotonic()
            if remaining <= 0:
                return False
            # Woken by a subscription frame; a full ZeroMQ queue drains on its own, hence the cap.
            self._sock.poll(max(1, int(min(remaining, FLUSH_POLL_SECONDS) * 1000)), zmq.POLLIN)
