"""The console process: reads its spec (the `[console]` section and the control
socket's path) on stdin, builds the tornado application and serves it on
`listen` (HTTPS when `tls_cert`/`tls_key` are set) until SIGTERM.

Idle, it sleeps in tornado's epoll: no timer, no thread, no connection to the
agent (a browser's request opens one; following Live holds one stream)."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import ssl
import sys

import msgspec
import tornado.web

from common import logs
from common.config_types import ConsoleConfig, parse_listen
from console import live, login, pages
from console.agent_api import AgentAPI
from console.security import LoginLimiter, Sessions, StaticFiles

log = logging.getLogger("console")
HERE = os.path.dirname(os.path.abspath(__file__))
MAX_BODY = 64 * 1024  # forms are small; anything larger is refused before it is read
NAME = r"([A-Za-z0-9][A-Za-z0-9_.-]{0,63})"


class ConsoleSpec(msgspec.Struct):
    console: ConsoleConfig
    control_socket: str
    node: str = ""  # "address (location)", for page titles


def make_app(spec: ConsoleSpec) -> tornado.web.Application:
    api = AgentAPI(spec.control_socket)
    tls = bool(spec.console.tls_cert and spec.console.tls_key)
    routes = [
        (r"/", pages.SinksPage),
        (rf"/sinks/{NAME}", pages.SinkPage),
        (rf"/sinks/{NAME}/restart", pages.RestartAction),
        (rf"/sinks/{NAME}/replay", pages.ReplayAction),
        (rf"/sinks/{NAME}/dead-letters/redrive", pages.RedriveAction),
        (rf"/sinks/{NAME}/dead-letters/discard", pages.DiscardAction),
        (r"/alarms", pages.AlarmsPage),
        (r"/live", live.LivePage),
        (r"/live/stream", live.LiveStream),
        (r"/schema", pages.SchemaPage),
        (r"/schema/(openapi|swagger)\.json", pages.SchemaDownload),
        (r"/config", pages.ConfigPage),
        (r"/api/(status|alarms)", pages.StatusData),
        (r"/login", login.LoginPage),
        (r"/logout", login.LogoutAction),
    ]
    return tornado.web.Application(
        routes,
        template_path=os.path.join(HERE, "templates"),
        static_path=os.path.join(HERE, "static"),
        static_handler_class=StaticFiles,
        default_handler_class=pages.NotFound,
        autoescape="xhtml_escape",
        cookie_secret=secrets.token_bytes(32),
        xsrf_cookies=True,
        xsrf_cookie_kwargs={"httponly": True, "samesite": "Strict", "secure": tls, "path": "/"},
        login_url="/login",
        compress_response=False,
        api=api,
        feed=live.DeliveryFeed(api),
        sessions=Sessions(spec.console.session_hours),
        session_days=spec.console.session_hours / 24.0,
        limiter=LoginLimiter(),
        password_file=spec.console.password_file,
        tls=tls,
        node_label=spec.node,
    )


def tls_context(c: ConsoleConfig) -> ssl.SSLContext | None:
    if not (c.tls_cert and c.tls_key):
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(c.tls_cert, c.tls_key)
    return ctx


async def serve(spec: ConsoleSpec) -> int:
    host, port = parse_listen(spec.console.listen) or ("", 0)
    app = make_app(spec)
    try:
        server = app.listen(
            port,
            address=host,
            ssl_options=tls_context(spec.console),
            max_body_size=MAX_BODY,
            max_header_size=MAX_BODY,
            idle_connection_timeout=120,
            body_timeout=30,
        )
    except (OSError, ssl.SSLError) as exc:
        log.error("console: cannot serve on %s: %s", spec.console.listen, getattr(exc, "strerror", None) or exc)
        return 1
    scheme = "https" if spec.console.tls_cert else "http"
    log.info("console: serving %s://%s (pid %d)", scheme, spec.console.listen, os.getpid())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.stop()
    app.settings["feed"].close()
    log.info("console: stopped")
    return 0


def main() -> int:
    try:
        spec = msgspec.json.decode(sys.stdin.buffer.read(), type=ConsoleSpec)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        logs.configure("console")
        log.error("console: unusable spec on stdin: %s", exc)
        return 2
    logs.configure("console", [spec.console.tls_key] if spec.console.tls_key else [])
    logging.getLogger("tornado.access").setLevel(logging.WARNING)  # refusals only: a page view is no news
    return asyncio.run(serve(spec))
