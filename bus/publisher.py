"""The bus client for conference processes: `Publisher` sends events to the agent.

The public contract is the frames, not this class (INTERFACE 4); any ZeroMQ
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
  EVENTS.md: `name` is required for conference events, `uuid` for the others;
  known fields must have their documented type; extra fields are forwarded.
- The payload may be at most `agent.max_message_kb` KiB.
- A rejected message is counted and logged by the agent; the sender gets no
  answer (PUB/SUB has none).

PUB/SUB drops silently: set a high send high-water mark (this class uses
1,000,000) and remember that messages sent before the connection is up are
lost ("slow joiner"). `Publisher` uses an XPUB socket (a PUB that also
receives the subscriber's subscription) so `wait_ready()` can tell when the
agent is listening.

    with Publisher("ipc:///run/eventsink-agent/publish.sock") as pub:
        pub.wait_ready(5.0)
        pub.publish("conference_started", {"name": "meet.alice"})
"""

from __future__ import annotations

import time as _time
from typing import Any

import orjson
import zmq


class Publisher:
    """One connection to the agent's bus; not thread-safe (one per thread)."""

    def __init__(self, endpoint: str, *, sndhwm: int = 1_000_000, linger_ms: int = 5000):
        self.endpoint = endpoint
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.XPUB)
        self._sock.setsockopt(zmq.SNDHWM, sndhwm)
        self._sock.setsockopt(zmq.LINGER, linger_ms)
        self._sock.connect(endpoint)
        self._ready = False

    def wait_ready(self, timeout: float) -> bool:
        """Wait up to TIMEOUT seconds until the agent has subscribed; True when it has."""
        deadline = _time.monotonic() + timeout
        while not self._ready:
            remaining = deadline - _time.monotonic()
            if remaining <= 0:
                return False
            if self._sock.poll(max(1, int(remaining * 1000)), zmq.POLLIN):
                frame = self._sock.recv()
                if frame[:1] == b"\x01":
                    self._ready = True
        return True

    def publish(self, event: str, data: dict[str, Any], time: float | None = None) -> None:
        """Send EVENT with DATA, stamped TIME (now when None). Never blocks; PUB drops at its HWM."""
        payload = orjson.dumps({"event": event, "time": _time.time() if time is None else time, "data": data})
        self._sock.send_multipart([event.encode("utf-8"), payload])

    def send_frames(self, frames: list[bytes]) -> None:
        """Send raw FRAMES as they are (for tests of malformed input)."""
        self._sock.send_multipart(frames)

    def close(self) -> None:
        """Close the socket (waiting up to linger_ms for queued messages) and the context."""
        if not self._sock.closed:
            self._sock.close()
        self._ctx.term()

    def __enter__(self) -> "Publisher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
