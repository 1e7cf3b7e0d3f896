"""The bus client for conference processes: `Publisher` sends events to the agent
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

`Publisher` closes these holes. Its XPUB socket (a PUB that also receives the
subscriber's subscribe and unsubscribe frames) tells it whether the agent is
subscribed; while it is not (not started yet, stopping, restarting: on SIGTERM
the broker withdraws its READY_TOPIC subscription first, then journals what is
already on its way), `publish` keeps the events in memory, in order, up to
`buffer_max` (then the oldest go, counted in `dropped`), and sends them first
once the agent subscribes again.

Numbering (exactly once, docs/bus.md): every message carries a third frame of
16 bytes, this Publisher's random 8-byte id and the event's sequence number (8
bytes, big-endian, from 1). The last `resend_max` events handed to ZeroMQ stay
in a ring; whenever a subscription frame arrives (a broker connecting: the
first one, or the next one after a graceful stop or a `kill -9`) they are sent
again, oldest first, before anything newer, and counted in `resent`. The
broker journals each (id, sequence) at most once and drops a repeat, so a
resend is harmless and a broker that died with events read but not journaled
gets them again. The socket is IMMEDIATE: ZeroMQ keeps no queue for a
connection that is down, so when a broker dies its pipe (and what was queued
in it) goes, libzmq hands us an unsubscription for each of its topics, and
nothing newer than the ring can reach the next broker before the ring does
(the broker keeps the highest sequence per id, so order matters). What still
goes: events beyond the ring (more than `resend_max` in transit when a broker
died), what `close` could not send in its timeout (left in `pending`), and
everything of a process that dies itself.

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
until a broker subscribes again; so the broker's drain ends quiet, with little
of ours in transit (what is, the ring resends). A subscriber that never announces READY_TOPIC (a plain SUB on
b"") counts as subscribed as long as it is. The socket is in XPUB_MANUAL mode: the
subscriptions ZeroMQ filters on change only when this class applies a frame,
never in the middle of a send, so an event is either sent (into ZeroMQ's queue
for the agent) or kept here, never silently filtered out.
"""

from __future__ import annotations

import os
import struct
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
_NUMBER = struct.Struct(">8sQ")  # the third frame: publisher id, sequence number (docs/bus.md)
_SEND_FLAGS = int(zmq.NOBLOCK)  # plain ints: pyzmq's enum flags cost Python-level arithmetic per frame
_MORE_FLAGS = int(zmq.NOBLOCK | zmq.SNDMORE)


_TOPICS: dict[str, bytes] = {}  # event name -> its UTF-8 bytes (the bus has a handful of names)


def _topic_bytes(event: str) -> bytes:
    encoded = event.encode("utf-8")
    if len(_TOPICS) < 64:
        _TOPICS[event] = encoded
    return encoded


class Publisher:
    """One connection to the agent's bus; not thread-safe (one per thread)."""

    def __init__(self, endpoint: str, *, buffer_max: int = 100_000, resend_max: int = 10_000, sndhwm: int = 1_000_000):
        if buffer_max < 1:
            raise ValueError("buffer_max must be at least 1")
        if resend_max < 0:
            raise ValueError("resend_max must be at least 0")
        self.endpoint = endpoint
        self.buffer_max = buffer_max
        self.resend_max = resend_max
        self.dropped = 0  # events dropped because more than buffer_max were kept (the oldest first)
        self.resent = 0  # events sent again after a broker subscribed anew
        self.id = os.urandom(8)  # this Publisher's id in every message's third frame
        self._seq = 0  # the last sequence number given to an event
        self._kept: deque[tuple[bytes, bytes, bytes]] = deque()  # (topic, payload, number), oldest first
        # The last resend_max events handed to ZeroMQ, sent again when a broker subscribes anew. Their
        # payloads' bytes are copied into one circular bytearray (_buf, written at _pos, wrapping to 0
        # when a payload does not fit at the end, grown when the live ones leave no room), so the
        # payload object is freed at once, while hot: keeping 10,000 ~800-byte objects alive made each
        # publish malloc cold memory and free a cold one (1.38x the old Publisher's cost; 1.18x with
        # the copy, measured). _ring is flat, four items per event: topic, number, start, end (in _buf).
        # Not tuples: bytes and ints are not tracked by the garbage collector, 10,000 live tuples are,
        # and the collections they cause doubled the cost of a publish (measured).
        self._ring: deque = deque(maxlen=4 * resend_max)
        self._ring_full = 4 * resend_max  # len(_ring) when it holds resend_max events
        self._buf = bytearray(resend_max * 1024)
        self._pos = 0
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
        # No queue for a connection that is down: a dead broker's pipe goes with it (and tells us
        # so by unsubscribing), so the ring reaches the next broker before anything newer.
        self._sock.setsockopt(zmq.IMMEDIATE, 1)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.connect(endpoint)
        # pyzmq's own send, without the checks its Python wrapper makes for options we never use
        # (routing ids, groups, str data): a third of a publish's cost was those wrappers (measured).
        self._send = zmq.backend.Socket.send.__get__(self._sock)

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
        topic = _TOPICS.get(event)
        if topic is None:
            topic = _topic_bytes(event)
        self._seq = seq = self._seq + 1
        number = _NUMBER.pack(self.id, seq)
        now = _time.monotonic()
        if now >= self._next_check:
            self._next_check = now + SUBSCRIPTION_CHECK_SECONDS
            self._check_subscriptions()
            if self._kept:
                self._send_kept()
        if self._open and not self._kept:
            send = self._send
            try:
                send(topic, _MORE_FLAGS)
            except zmq.Again:
                pass  # ZeroMQ's queue is full (a stalled agent): keep it, in order, behind nothing
            else:
                # Not EAGAIN after the first frame: XPUB checks its high-water mark there only.
                send(payload, _MORE_FLAGS)
                send(number, _SEND_FLAGS)
                if self._ring_full:
                    self._remember(topic, payload, number)
                return
        self._keep((topic, payload, number))

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

    def _keep(self, message: tuple[bytes, bytes, bytes]) -> None:
        if len(self._kept) >= self.buffer_max:
            self._kept.popleft()
            self.dropped += 1
        self._kept.append(message)

    def _remember(self, topic: bytes, payload: bytes, number: bytes) -> None:
        """Put an event just handed to ZeroMQ in the ring (the oldest goes once it holds resend_max)."""
        ring = self._ring
        n = len(payload)
        pos = self._pos
        # The start of the oldest event still in the ring after this append (None: no event stays).
        if len(ring) < self._ring_full:
            head = ring[2] if ring else None
        else:
            head = ring[6] if len(ring) > 4 else None
        if head is None:
            if n > len(self._buf):
                self._grow(n)
            pos = 0
        elif head < pos:  # the live bytes are [head, pos): free are [pos, len) and [0, head)
            if pos + n > len(self._buf):
                if n <= head:
                    pos = 0
                else:
                    pos = self._grow(n)
        elif pos + n > head:  # wrapped (payloads are never empty): free is [pos, head) only
            pos = self._grow(n)
        end = pos + n
        self._buf[pos:end] = payload
        self._pos = end
        ring.append(topic)
        ring.append(number)
        ring.append(pos)
        ring.append(end)

    def _grow(self, n: int) -> int:
        """Lay the ring's payloads out again from 0 in a buffer with room for N more bytes beyond
        what the events staying after the next append hold; the offset to write at."""
        ring, buf = self._ring, self._buf
        items = list(ring)
        if len(ring) >= self._ring_full:
            items = items[4:]  # the oldest goes with the coming append
        live = sum(items[i + 3] - items[i + 2] for i in range(0, len(items), 4))
        new = bytearray(max(2 * len(buf), 2 * (live + n)))
        ring.clear()
        pos = 0
        for i in range(0, len(items), 4):
            start, end = items[i + 2], items[i + 3]
            size = end - start
            new[pos : pos + size] = buf[start:end]
            ring.append(items[i])
            ring.append(items[i + 1])
            ring.append(pos)
            ring.append(pos + size)
            pos += size
        self._buf = new
        return pos

    def _resend(self) -> None:
        """A broker subscribed anew: put the ring in front of the kept events (it is older), to be
        sent first. Beyond buffer_max on purpose: these are not new events to drop."""
        ring = self._ring
        if ring:
            items = list(ring)
            ring.clear()
            self._pos = 0
            buf = self._buf
            self.resent += len(items) // 4
            messages = [
                (items[i], bytes(buf[items[i + 2] : items[i + 3]]), items[i + 1]) for i in range(0, len(items), 4)
            ]
            self._kept.extendleft(reversed(messages))

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
                # A broker connecting (each subscribes once): it may lack what the last one read
                # and never journaled. A second frame of the same broker finds the ring empty.
                self._resend()
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
            message = kept[0]
            try:
                sock.send(message[0], _MORE_FLAGS)
            except zmq.Again:
                return
            # Not EAGAIN here: XPUB checks its high-water mark at a message's first frame only.
            sock.send(message[1], _MORE_FLAGS)
            sock.send(message[2], _SEND_FLAGS)
            kept.popleft()
            if self._ring_full:
                self._remember(*message)

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
