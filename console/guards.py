"""Who may see what: every page, download, stream and action needs a session.

`page`: a GET without a session is sent to /login (a browser's way of being
refused); `data`: a download, stream or JSON answer without a session is 403;
POSTs need a session too (403), and tornado has already refused one without the
anti-forgery token (403) before the handler runs."""

from __future__ import annotations

import functools
import urllib.parse


def page(method):
    @functools.wraps(method)
    async def wrapper(self, *args, **kwargs):
        if not self.current_user:
            self.redirect("/login?" + urllib.parse.urlencode({"next": self.request.path}))
            return None
        return await method(self, *args, **kwargs)

    return wrapper


def data(method):
    @functools.wraps(method)
    async def wrapper(self, *args, **kwargs):
        if not self.current_user:
            self.set_status(403)
            self.finish({"error": "log in first"})
            return None
        return await method(self, *args, **kwargs)

    return wrapper


action = data  # a POST without a session: 403, nothing done


def local_path(target: str | None, default: str = "/") -> str:
    """TARGET when it is a path on this console (never another origin: no //host, no scheme)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    return target
