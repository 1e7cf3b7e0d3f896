"""The console's security (docs/console.md): the one user `admin` and its hashed
password, sessions, the login rate limit, and the headers every answer carries.

- Sessions: a random id in a tornado signed cookie (HttpOnly, SameSite=Strict,
  Secure under TLS), looked up in this process's table, so that Log out and
  `session_hours` end it for good (a signed cookie alone could not be revoked).
  The signing key is made when the process starts: a console restart logs
  everyone out, which is the safe side.
- Anti-forgery: tornado's `xsrf_cookies` (a token in every form; a POST without
  it is refused with 403 before any handler runs).
- Rate limit: five failed logins within a minute from one address refuse every
  further login from it for a minute (the right password included).
- Headers: a Content-Security-Policy with no inline script, no inline style and no
  other origin; no framing, no referrer, no caching of pages.
"""

from __future__ import annotations

import collections
import secrets
import time

import tornado.web

SESSION_COOKIE = "esa_session"
USER = "admin"
FAILS_ALLOWED = 5
FAIL_WINDOW = 60.0  # s
LOCKOUT = 60.0  # s
MAX_TRACKED_ADDRESSES = 10_000  # bound on the rate limiter's memory under a spray of addresses
MAX_SESSIONS = 1_000
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


class LoginLimiter:
    """Failed logins per address; `refused(addr)` once FAILS_ALLOWED failed within FAIL_WINDOW."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.failures: dict[str, collections.deque[float]] = {}
        self.locked_until: dict[str, float] = {}

    def refused(self, addr: str) -> bool:
        until = self.locked_until.get(addr)
        if until is None:
            return False
        if self.clock() >= until:
            del self.locked_until[addr]
            self.failures.pop(addr, None)
            return False
        return True

    def failed(self, addr: str) -> None:
        now = self.clock()
        if len(self.failures) >= MAX_TRACKED_ADDRESSES and addr not in self.failures:
            self._forget_old(now)
        recent = self.failures.setdefault(addr, collections.deque(maxlen=FAILS_ALLOWED))
        recent.append(now)
        if len(recent) == FAILS_ALLOWED and now - recent[0] <= FAIL_WINDOW:
            self.locked_until[addr] = now + LOCKOUT

    def succeeded(self, addr: str) -> None:
        self.failures.pop(addr, None)

    def _forget_old(self, now: float) -> None:
        for addr in [a for a, d in self.failures.items() if not d or now - d[-1] > FAIL_WINDOW]:
            del self.failures[addr]
        if len(self.failures) >= MAX_TRACKED_ADDRESSES:
            self.failures.clear()  # a spray of addresses: forgetting is safer than growing


class Sessions:
    """Live sessions: id -> monotonic expiry."""

    def __init__(self, hours: float, clock=time.monotonic):
        self.lifetime = hours * 3600.0
        self.clock = clock
        self.expiry: dict[str, float] = {}

    def open(self) -> str:
        now = self.clock()
        self.expiry = {k: v for k, v in self.expiry.items() if v > now}
        if len(self.expiry) >= MAX_SESSIONS:
            oldest = min(self.expiry, key=self.expiry.get)
            del self.expiry[oldest]
        sid = secrets.token_urlsafe(32)
        self.expiry[sid] = now + self.lifetime
        return sid

    def valid(self, sid: str | None) -> bool:
        if not sid:
            return False
        until = self.expiry.get(sid)
        if until is None:
            return False
        if self.clock() >= until:
            del self.expiry[sid]
            return False
        return True

    def close(self, sid: str | None) -> None:
        if sid:
            self.expiry.pop(sid, None)


class SecureHandler(tornado.web.RequestHandler):
    """Every console answer: security headers, the session user, no Server header."""

    def set_default_headers(self) -> None:
        for name, value in SECURITY_HEADERS.items():
            self.set_header(name, value)
        self.set_header("Cache-Control", "no-store")
        self.clear_header("Server")

    def session_id(self) -> str | None:
        raw = self.get_signed_cookie(SESSION_COOKIE, max_age_days=self.settings["session_days"])
        return raw.decode("ascii", "replace") if raw else None

    def get_current_user(self) -> str | None:
        return USER if self.settings["sessions"].valid(self.session_id()) else None

    def cookie_flags(self) -> dict:
        return {"httponly": True, "samesite": "Strict", "secure": self.settings["tls"], "path": "/"}

    def start_session(self) -> None:
        sid = self.settings["sessions"].open()
        self.set_signed_cookie(
            SESSION_COOKIE,
            sid,
            expires_days=None,
            max_age=int(self.settings["sessions"].lifetime),
            **self.cookie_flags(),
        )

    def end_session(self) -> None:
        self.settings["sessions"].close(self.session_id())
        self.clear_cookie(SESSION_COOKIE, **self.cookie_flags())


class StaticFiles(tornado.web.StaticFileHandler):
    """The script and the stylesheet, with the same headers as the pages."""

    def set_default_headers(self) -> None:
        for name, value in SECURITY_HEADERS.items():
            self.set_header(name, value)
        self.clear_header("Server")
