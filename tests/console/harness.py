"""Shared by the console's tests: a real agent with its console on 127.0.0.1, and a
plain HTTP client of the console that keeps cookies and reads the anti-forgery
token from the forms, as a browser would (no browser needed)."""

from __future__ import annotations

import http.client
import http.cookies
import os
import re
import ssl
import urllib.parse
from dataclasses import dataclass, field

from common import passwords
from tests.e2e.harness import Agent, render_toml
from tests.helpers import wait_until
from tools.demo import free_port

PASSWORD = "console-pass-3e9b71"
XSRF_FIELD = re.compile(r'name="_xsrf" value="([^"]+)"')


class ConsoleAgent(Agent):
    """An Agent whose config has a [console] section (listen on a free loopback port)."""

    def __init__(self, sinks: list[dict], *, console: dict | None = None, **kw):
        self.console_port = free_port()
        super().__init__(sinks, **kw)
        self.password_file = os.path.join(self.base, "console.passwd")
        passwords.write_hash_file(self.password_file, passwords.hash_password(PASSWORD))
        self.console = {
            "listen": f"127.0.0.1:{self.console_port}",
            "password_file": self.password_file,
            **(console or {}),
        }
        self.write_config()

    def write_config(self, text: str | None = None) -> None:
        if text is None and getattr(self, "console", None):
            text = render_toml(self.node, self.agent, self.tuning, self.sinks)
            text += "\n[console]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in self.console.items())
        super().write_config(text)

    @property
    def console_url(self) -> str:
        scheme = "https" if self.console.get("tls_cert") else "http"
        return f"{scheme}://127.0.0.1:{self.console_port}"

    def console_pid(self) -> int | None:
        from tests.e2e.harness import cmdline

        return next((p for p in self.child_pids() if "-m console" in cmdline(p)), None)

    def wait_console(self, timeout: float = 20.0) -> int:
        def up():
            pid = self.console_pid()
            return pid if pid and Browser(self).get("/login").status == 200 else None

        return wait_until(up, timeout, interval=0.1, what="the console to answer")


def _toml(v) -> str:
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(v).lower() if isinstance(v, bool) else str(v)


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def header_all(self, name: str) -> list[str]:
        return self.headers.get_all(name) or []


@dataclass
class Browser:
    """Cookies and forms over http.client: enough to drive the console without JavaScript."""

    agent: ConsoleAgent
    cookies: dict[str, str] = field(default_factory=dict)
    ca_file: str | None = None
    source: str | None = None  # another loopback address to come from (the rate limit counts per address)

    def _conn(self) -> http.client.HTTPConnection:
        source = (self.source, 0) if self.source else None
        if self.agent.console_url.startswith("https"):
            ctx = ssl.create_default_context(cafile=self.ca_file)
            return http.client.HTTPSConnection(
                "127.0.0.1", self.agent.console_port, context=ctx, timeout=20, source_address=source
            )
        return http.client.HTTPConnection("127.0.0.1", self.agent.console_port, timeout=20, source_address=source)

    def request(self, method: str, path: str, form: dict | None = None, headers: dict | None = None) -> Answer:
        conn = self._conn()
        hdrs = dict(headers or {})
        if self.cookies:
            hdrs["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form)
            hdrs["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        for raw in resp.headers.get_all("Set-Cookie") or []:
            jar = http.cookies.SimpleCookie()
            jar.load(raw)
            for name, morsel in jar.items():
                if morsel.value and morsel["max-age"] != "0" and "1970" not in morsel["expires"]:
                    self.cookies[name] = morsel.value
                else:
                    self.cookies.pop(name, None)
        return Answer(resp.status, resp.headers, data)

    def get(self, path: str) -> Answer:
        return self.request("GET", path)

    def token(self, path: str = "/login") -> str:
        """The anti-forgery token of PATH's forms (and its cookie, kept)."""
        page = self.get(path)
        m = XSRF_FIELD.search(page.text)
        assert m, f"no _xsrf field on {path} ({page.status})"
        return m.group(1)

    def post(self, path: str, form: dict | None = None, *, token_from: str = "/") -> Answer:
        """POST a form the way the console's own pages do (with the anti-forgery token)."""
        return self.request("POST", path, {**(form or {}), "_xsrf": self.token(token_from)})

    def login(self, password: str = PASSWORD, user: str = "admin") -> Answer:
        return self.request("POST", "/login", {"username": user, "password": password, "_xsrf": self.token("/login")})
