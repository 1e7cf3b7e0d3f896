"""The Live page's feed: the agent's deliveries stream (`GET /v1/deliveries?follow=1`,
NDJSON) passed on to browsers as Server-Sent Events.

One upstream stream per console, opened when the first browser follows and
closed when the last one leaves, so that with nobody on Live the console holds
no stream and the workers stream nothing (docs/control-api.md: "costs nothing while
nobody follows"). The blocking read runs on its own thread and hands the lines
to the event loop in batches (one wake-up for what arrived within BATCH_WINDOW). Each
line goes to the browser as it came, never decoded and encoded again; it is
decoded only for a browser that narrowed Live to one sink. A browser's writer
sends everything queued with one flush. A browser that cannot keep up loses the
oldest items (its queue is bounded), never the console's memory.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
from collections.abc import Callable

import orjson
import tornado.queues
from tornado.ioloop import IOLoop
from tornado.iostream import StreamClosedError

from console.agent_api import AgentAPI, AgentError
from console.guards import data, page
from console.pages import ConsolePage
from console.security import USER

log = logging.getLogger("console")

QUEUE_PER_BROWSER = 500
RETRY_INITIAL, RETRY_MAX = 1.0, 15.0  # s between attempts to reopen a stream that ended
# s the lines that arrive are gathered before the loop passes them on: at 200 POSTs/s, 20 wake-ups and
# flushes a second instead of 200, for at most this much more delay on Live
BATCH_WINDOW = 0.1


def readable(delivery: dict) -> dict:
    """A delivery with its event's name and its body as indented JSON (a bulk envelope included)."""
    out = dict(delivery)
    try:
        doc = json.loads(delivery.get("body") or "")
    except (TypeError, ValueError):
        return out
    if isinstance(doc, dict):
        out["event"] = doc.get("event")
    out["body"] = json.dumps(doc, indent=2, ensure_ascii=False)
    return out


def sink_of(line: bytes) -> str | None:
    try:
        item = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return item.get("sink") if isinstance(item, dict) else None


class DeliveryFeed:
    def __init__(self, api: AgentAPI):
        self.api = api
        self.listeners: set[Callable[[str, bytes], None]] = set()
        self.pending: collections.deque[tuple[int, bytes]] = collections.deque()  # reader thread -> loop
        self.handing_over = False
        self.generation = 0  # bumped at each open: a stale reader's lines are dropped
        self.stream = None
        self.retry = RETRY_INITIAL
        self.retry_handle = None

    def subscribe(self, listener: Callable[[str, bytes], None]) -> None:
        self.listeners.add(listener)
        if len(self.listeners) == 1:
            self._open()

    def unsubscribe(self, listener: Callable[[str, bytes], None]) -> None:
        self.listeners.discard(listener)
        if not self.listeners:
            self.close()

    def _open(self) -> None:
        self.retry_handle = None
        self.generation += 1
        self.stream = self.api.follow()
        loop = IOLoop.current()
        threading.Thread(
            target=self._read, args=(loop, self.generation, self.stream), name="deliveries", daemon=True
        ).start()

    def close(self) -> None:
        self.generation += 1
        if self.retry_handle is not None:
            IOLoop.current().remove_timeout(self.retry_handle)
            self.retry_handle = None
        if self.stream is not None:
            self.stream.close()
            self.stream = None

    def _read(self, loop: IOLoop, generation: int, stream) -> None:
        why = "the agent ended the deliveries stream"
        try:
            for line in stream.lines():
                self.pending.append((generation, line))
                if not self.handing_over:  # one wake-up of the loop for whatever arrives in the window
                    self.handing_over = True
                    loop.add_callback(loop.call_later, BATCH_WINDOW, self._hand_over)
        except AgentError as exc:
            why = exc.message
        except OSError:
            why = "the deliveries stream was cut"
        except Exception as exc:  # a bug must not leave Live silently dead
            log.exception("console: deliveries stream failed")
            why = f"the deliveries stream failed: {type(exc).__name__}"
        loop.add_callback(self._ended, generation, why)

    def _hand_over(self) -> None:
        self.handing_over = False
        lines = [line for generation, line in self._take_pending() if generation == self.generation]
        if lines:
            self.retry = RETRY_INITIAL
        for listener in list(self.listeners):
            for line in lines:
                listener("delivery", line)

    def _take_pending(self):
        while True:
            try:
                yield self.pending.popleft()
            except IndexError:
                return

    def _ended(self, generation: int, why: str) -> None:
        if generation != self.generation or not self.listeners:
            return
        self.stream = None
        note = json.dumps({"message": f"{why}; trying again in {self.retry:g} s"}).encode()
        for listener in list(self.listeners):
            listener("status", note)
        self.retry_handle = IOLoop.current().call_later(self.retry, self._open)
        self.retry = min(self.retry * 2, RETRY_MAX)


class LiveStream(ConsolePage):
    """`GET /live/stream[?sink=NAME]`: Server-Sent Events, one `delivery` event per POST."""

    @data
    async def get(self) -> None:
        self.sid = self.session_id()
        self.sink = self.get_argument("sink", "")
        self.queue: tornado.queues.Queue = tornado.queues.Queue(maxsize=QUEUE_PER_BROWSER)
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("X-Accel-Buffering", "no")
        feed: DeliveryFeed = self.settings["feed"]
        feed.subscribe(self.take)
        try:
            self.write("retry: 2000\n: following\n\n")
            await self.flush()
            while await self._send_queued():
                pass
        except StreamClosedError:
            pass
        finally:
            feed.unsubscribe(self.take)
        if not self._finished:
            self.finish()

    async def _send_queued(self) -> bool:
        """Everything queued, with one flush; False once the stream is to end."""
        items = [await self.queue.get()]
        while not self.queue.empty():
            items.append(self.queue.get_nowait())
        for item in items:
            if item is None:
                return False
            kind, line = item
            self.write(b"event: " + kind.encode() + b"\ndata: " + line + b"\n\n")
        await self.flush()
        return self.settings["sessions"].valid(self.sid)  # Log out (or expiry) ends the stream

    def take(self, kind: str, item: bytes) -> None:
        if kind == "delivery" and self.sink and sink_of(item) != self.sink:
            return
        if self.queue.full():
            self.queue.get_nowait()  # the oldest goes: this browser is behind
        self.queue.put_nowait((kind, item))

    def on_connection_close(self) -> None:
        if self.queue.full():
            self.queue.get_nowait()
        self.queue.put_nowait(None)


class LivePage(ConsolePage):
    """`/live`: the recent POSTs of every sink (or one), newest first; the script follows the stream."""

    @page
    async def get(self) -> None:
        api: AgentAPI = self.settings["api"]
        chosen = self.get_argument("sink", "")
        try:
            status = await api.get("/v1/status")
        except AgentError as exc:
            self.set_status(502)
            self.render("error.html", title="Live", page="error", status=502, message=exc.message, notice=None)
            return
        names = [s.get("name") for s in status.get("sinks", [])]
        recent, problem = [], None
        for name in names if not chosen else [n for n in names if n == chosen]:
            try:
                for item in await api.get(api.sink_path(name, "deliveries"), limit=20):
                    recent.append({**item, "sink": name})
            except AgentError as exc:
                problem = exc.message
        recent.sort(key=lambda d: str(d.get("at", "")), reverse=True)
        recent = [readable(d) for d in recent[:50]]
        self.show(
            "live.html",
            title="Live",
            page="live",
            names=names,
            chosen=chosen,
            recent=recent,
            problem=problem,
            user=USER,
        )
