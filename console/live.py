"""The Live page's feed: the agent's deliveries stream (`GET /v1/deliveries?follow=1`,
NDJSON) passed on to browsers as Server-Sent Events.

One upstream stream per console, opened when the first browser follows and
closed when the last one leaves, so that with nobody on Live the console holds
no stream and the workers stream nothing (INTERFACE 6: "costs nothing while
nobody follows"). The blocking read runs on its own thread and hands each line
to the event loop. A browser that cannot keep up loses the oldest items (its
queue is bounded), never the console's memory.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Callable

import tornado.queues
from tornado.ioloop import IOLoop
from tornado.iostream import StreamClosedError

from console.agent_api import AgentAPI, AgentError
from console.pages import ConsolePage
from console.security import USER

log = logging.getLogger("console")

QUEUE_PER_BROWSER = 500
RETRY_INITIAL, RETRY_MAX = 1.0, 15.0  # s between attempts to reopen a stream that ended


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


class DeliveryFeed:
    def __init__(self, api: AgentAPI):
        self.api = api
        self.listeners: set[Callable[[str, dict], None]] = set()
        self.generation = 0  # bumped at each open: a stale reader's lines are dropped
        self.stream = None
        self.retry = RETRY_INITIAL
        self.retry_handle = None

    def subscribe(self, listener: Callable[[str, dict], None]) -> None:
        self.listeners.add(listener)
        if len(self.listeners) == 1:
            self._open()

    def unsubscribe(self, listener: Callable[[str, dict], None]) -> None:
        self.listeners.discard(listener)
        if not self.listeners:
            self._close()

    def _open(self) -> None:
        self.retry_handle = None
        self.generation += 1
        self.stream = self.api.follow()
        loop = IOLoop.current()
        threading.Thread(target=self._read, args=(loop, self.generation, self.stream), name="deliveries",
                         daemon=True).start()

    def _close(self) -> None:
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
            for item in stream.lines():
                loop.add_callback(self._publish, generation, "delivery", item)
        except AgentError as exc:
            why = exc.message
        except OSError:
            why = "the deliveries stream was cut"
        except Exception as exc:  # a bug must not leave Live silently dead
            log.exception("console: deliveries stream failed")
            why = f"the deliveries stream failed: {type(exc).__name__}"
        loop.add_callback(self._ended, generation, why)

    def _publish(self, generation: int, kind: str, item: dict) -> None:
        if generation != self.generation:
            return
        self.retry = RETRY_INITIAL
        for listener in list(self.listeners):
            listener(kind, item)

    def _ended(self, generation: int, why: str) -> None:
        if generation != self.generation or not self.listeners:
            return
        self.stream = None
        for listener in list(self.listeners):
            listener("status", {"message": f"{why}; trying again in {self.retry:g} s"})
        self.retry_handle = IOLoop.current().call_later(self.retry, self._open)
        self.retry = min(self.retry * 2, RETRY_MAX)


class LiveStream(ConsolePage):
    """`GET /live/stream[?sink=NAME]`: Server-Sent Events, one `delivery` event per POST."""

    async def get(self) -> None:
        if not self.current_user:
            self.set_status(403)
            self.finish({"error": "log in first"})
            return
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
            while True:
                item = await self.queue.get()
                if item is None or not self.settings["sessions"].valid(self.sid):
                    break
                kind, body = item
                self.write(f"event: {kind}\ndata: {json.dumps(body, separators=(',', ':'))}\n\n")
                await self.flush()
        except StreamClosedError:
            pass
        finally:
            feed.unsubscribe(self.take)
        if not self._finished:
            self.finish()

    def take(self, kind: str, item: dict) -> None:
        if kind == "delivery" and self.sink and item.get("sink") != self.sink:
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

    async def get(self) -> None:
        if not self.current_user:
            self.redirect("/login?next=/live")
            return
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
        self.show("live.html", title="Live", page="live", names=names, chosen=chosen, recent=recent,
                  problem=problem, user=USER)
