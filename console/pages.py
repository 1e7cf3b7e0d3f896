"""The console's pages and their actions (docs/console.md): Event sinks (Restart), a
sink's page (attempts, dead letters with Redrive and Discard, Replay with a
dry-run count then Confirm), Alarms, View schema and its two downloads,
Configuration, login and Log out. Each page is rendered on the server from the
control API's answers (readable without JavaScript); every action is an HTML
form that POSTs, then redirects back with a notice (post/redirect/get)."""

from __future__ import annotations

import html
import json
import time
import urllib.parse
from typing import Any

import tornado.web

from common.timespec import parse_time
from console import schema_view
from console.agent_api import AgentError
from console.guards import action, data, local_path, page
from console.security import SecureHandler

ATTEMPTS_SHOWN = 20
# What a redirect's ?notice= may say: fixed sentences, never text taken from the request.
NOTICES = {
    "restarted": "Restart requested: the sink's publisher starts again with eventsink_started.",
    "replayed": "Replay started: the retained events are being sent again.",
    "redriven": "Redrive requested: the dead letter is sent again before the backlog.",
    "discarded": "The dead letter was discarded for good.",
}


def when(iso: Any) -> str:
    """A time the browser's script shows in its own zone (UTC as text and on hover without it)."""
    if not iso:
        return "-"
    text = html.escape(str(iso))
    return f'<time datetime="{text}" title="{text}">{text}</time>'


def sink_page(name: str) -> str:
    return "/sinks/" + urllib.parse.quote(name, safe="")


def seconds(value: Any) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "-"
    if not value:
        return "0"
    return f"{value * 1000:.3g} ms" if value < 1 else f"{value:.3g} s"


class ConsolePage(SecureHandler):
    @property
    def api(self):
        return self.settings["api"]

    def get_template_namespace(self) -> dict:
        ns = super().get_template_namespace()
        ns.update(when=when, seconds=seconds, node=self.settings["node_label"], notice=None, json=json)
        return ns

    def show(self, template: str, **values: Any) -> None:
        notice = NOTICES.get(self.get_argument("notice", ""))
        self.render(template, notice=notice, **values)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None))[1]
        message = (
            exc.message
            if isinstance(exc, Refusal)
            else {403: "Refused: log in, and send forms from the console's own pages.", 404: "No such page."}.get(
                status_code, "The console could not answer this request."
            )
        )
        self.render("error.html", title="Not done", page="error", status=status_code, message=message, notice=None)

    async def ask(self, method: str, path: str, body: Any = None, raw: bool = False) -> Any:
        try:
            return await self.api.call(method, path, body, raw)
        except AgentError as exc:
            raise Refusal(502 if exc.status in (0, 500, 503) else exc.status, exc.message) from None

    def back_to(self, path: str, notice: str) -> None:
        self.redirect(f"{path}?{urllib.parse.urlencode({'notice': notice})}", status=303)


class Refusal(tornado.web.HTTPError):
    """A request the agent (or the console) refused: the error page shows its one sentence."""

    def __init__(self, status: int, message: str):
        super().__init__(status, "%s", message)
        self.message = message


async def find_sink(handler: ConsolePage, name: str) -> tuple[dict, dict]:
    status = await handler.ask("GET", "/v1/status")
    sink = next((s for s in status.get("sinks", []) if s.get("name") == name), None)
    if sink is None:
        raise Refusal(404, f"No sink named {name[:64]!r} runs on this node.")
    return status, sink


class SinksPage(ConsolePage):
    @page
    async def get(self) -> None:
        status = await self.ask("GET", "/v1/status")
        self.show("sinks.html", title="Event sinks", page="sinks", status=status)


class SinkPage(ConsolePage):
    @page
    async def get(self, name: str) -> None:
        status, sink = await find_sink(self, name)
        attempts, attempts_error = [], None
        try:
            attempts = await self.api.get(self.api.sink_path(name, "attempts"), limit=ATTEMPTS_SHOWN)
        except AgentError as exc:
            attempts_error = exc.message
        dead = await self.ask("GET", self.api.sink_path(name, "dead-letters"))
        self.show(
            "sink.html",
            title=f"Sink {name}",
            page="sink",
            sink=sink,
            attempts=attempts,
            attempts_error=attempts_error,
            dead_letters=dead,
            replay=None,
        )


class RestartAction(ConsolePage):
    @action
    async def post(self, name: str) -> None:
        await self.ask("POST", self.api.sink_path(name, "restart"))
        self.back_to(local_path(self.get_body_argument("back", "/")), "restarted")


class ReplayAction(ConsolePage):
    """First a dry run (the count, and a Confirm form for the same point in time), then the replay."""

    @action
    async def post(self, name: str) -> None:
        given = self.get_body_argument("since", "").strip()
        try:
            since = parse_time(given, time.time())
        except ValueError as exc:
            raise Refusal(400, str(exc)) from None
        path = self.api.sink_path(name, "replay")
        if self.get_body_argument("confirm", "") != "yes":
            count = await self.ask("POST", path, {"since": since, "dry_run": True})
            _, sink = await find_sink(self, name)
            self.show(
                "replay.html", title=f"Replay {name}", page="replay", sink=sink, given=given, since=since, count=count
            )
            return
        await self.ask("POST", path, {"since": since, "dry_run": False})
        self.back_to(sink_page(name), "replayed")


class RedriveAction(ConsolePage):
    @action
    async def post(self, name: str) -> None:
        ident = self.get_body_argument("id", "")
        await self.ask("POST", self.api.sink_path(name, "dead-letters", "redrive"), {"ids": [ident] if ident else []})
        self.back_to(sink_page(name), "redriven")


class DiscardAction(ConsolePage):
    @action
    async def post(self, name: str) -> None:
        ident = self.get_body_argument("id")
        await self.ask("DELETE", self.api.sink_path(name, "dead-letters", urllib.parse.quote(ident, safe="")))
        self.back_to(sink_page(name), "discarded")


class AlarmsPage(ConsolePage):
    @page
    async def get(self) -> None:
        alarms = await self.ask("GET", "/v1/alarms")
        self.show("alarms.html", title="Alarms", page="alarms", alarms=alarms)


class SchemaPage(ConsolePage):
    @page
    async def get(self) -> None:
        doc = await self.ask("GET", "/v1/schema?format=openapi")
        self.show(
            "schema.html",
            title="View schema",
            page="schema",
            versions=schema_view.events_by_version(doc),
            info=doc.get("info", {}),
        )


class SchemaDownload(ConsolePage):
    """The documents `eventsink-agent schema` prints, byte for byte, as attachments."""

    @data
    async def get(self, fmt: str) -> None:
        raw = await self.ask("GET", f"/v1/schema?format={fmt}", raw=True)
        self.set_header("Content-Type", "application/json")
        self.set_header("Content-Disposition", f'attachment; filename="eventsink-{fmt}.json"')
        self.finish(raw)


class ConfigPage(ConsolePage):
    @page
    async def get(self) -> None:
        answer = await self.ask("GET", "/v1/config")
        running = json.dumps(answer.get("running", {}), indent=2)
        self.show("config.html", title="Configuration", page="config", answer=answer, running=running)


class StatusData(ConsolePage):
    """What the pages' script polls for live figures (JSON, the control API's own answers)."""

    @data
    async def get(self, what: str) -> None:
        if what == "status":
            self.finish(await self.ask("GET", "/v1/status"))
        elif what == "alarms":
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps(await self.ask("GET", "/v1/alarms")))
        else:
            self.send_error(404)


class NotFound(ConsolePage):
    """Every unknown path: 404 (a login first, so the console's map is not shown to strangers)."""

    @page
    async def get(self) -> None:
        raise tornado.web.HTTPError(404)

    @action
    async def post(self) -> None:
        raise tornado.web.HTTPError(404)
