"""`/login` and Log out (docs/console.md): the one user `admin`, its password checked
against the hash in `password_file` (read at each login, so a new
`console-password` applies at once; scrypt runs on a worker thread), the rate
limit per address, and the session cookie."""

from __future__ import annotations

import hmac
import logging

from tornado.ioloop import IOLoop

from common import passwords
from console.guards import local_path
from console.pages import ConsolePage
from console.security import USER

log = logging.getLogger("console")

WRONG = "Wrong user name or password."
LOCKED = "Too many failed logins from your address: try again in a minute."
BROKEN = "The console cannot check passwords now: its password file is unusable (see the agent's log)."


def check_password(path: str, given: str) -> bool | None:
    """True/False; None when the password file cannot be used."""
    try:
        line = passwords.read_hash_file(path)
    except (OSError, passwords.BadHashFile) as exc:
        log.error("console: password_file %s unusable: %s", path, getattr(exc, "strerror", None) or exc)
        return None
    return passwords.verify_password(given, line)


class LoginPage(ConsolePage):
    async def get(self) -> None:
        if self.current_user:
            self.redirect(local_path(self.get_argument("next", "/")))
            return
        self.show_login(None)

    def show_login(self, error: str | None) -> None:
        self.render(
            "login.html",
            title="Log in",
            page="login",
            error=error,
            notice=None,
            next=local_path(self.get_argument("next", "/")),
        )

    async def post(self) -> None:
        limiter, addr = self.settings["limiter"], self.request.remote_ip
        if limiter.refused(addr):
            self.set_status(429)
            self.show_login(LOCKED)
            return
        user = self.get_body_argument("username", "")
        given = self.get_body_argument("password", "")
        ok = await IOLoop.current().run_in_executor(None, check_password, self.settings["password_file"], given)
        if ok is None:
            self.set_status(503)
            self.show_login(BROKEN)
            return
        if not (ok and hmac.compare_digest(user.encode("utf-8", "replace"), USER.encode())):
            limiter.failed(addr)
            log.warning("console: failed login from %s", addr)
            self.set_status(403)
            self.show_login(WRONG)
            return
        limiter.succeeded(addr)
        self.start_session()
        log.info("console: admin logged in from %s", addr)
        self.redirect(local_path(self.get_body_argument("next", "/")), status=303)


class LogoutAction(ConsolePage):
    async def post(self) -> None:
        self.end_session()
        self.redirect("/login", status=303)
