"""Logging for every process of the agent: one line per record on stderr, the
`support.events` logger for delivery and alarm reasons, a filter that masks
every configured secret before a record is written, and `RateLimited`, the one
way to log something that can repeat many times a second."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Hashable, Iterable

SUPPORT = "support.events"
FORMAT = "%(asctime)s %(levelname)s %(name)s [%(process_label)s]: %(message)s"


class RateLimited:
    """Log the first of a kind at once, then at most one line per kind every EVERY seconds,
    that line saying how many of the kind were suppressed since the one before.

    Only decides: `allow(kind)` answers None (stay quiet; counted) or the number suppressed
    since the kind's last line, and the caller writes the line it wants. KIND is any hashable
    (a reject reason, an (outcome, status) pair); at most MAX_KINDS are remembered.
    """

    MAX_KINDS = 64

    def __init__(self, every: float, clock: Callable[[], float] = time.monotonic):
        self.every = every
        self.clock = clock
        self._kinds: dict[Hashable, list] = {}  # kind -> [logged_at, suppressed since]

    def allow(self, kind: Hashable = None, n: int = 1, now: float | None = None) -> int | None:
        """None when N more of KIND stay unlogged, else how many were suppressed before them."""
        now = self.clock() if now is None else now
        entry = self._kinds.get(kind)
        if entry is not None and now - entry[0] < self.every:
            entry[1] += n
            return None
        if entry is None and len(self._kinds) >= self.MAX_KINDS:
            self._kinds.clear()
        self._kinds[kind] = [now, 0]
        return entry[1] if entry is not None else 0

    def forget(self) -> None:
        """Log the next of every kind at once (the trouble is over)."""
        self._kinds.clear()


def suppressed_note(suppressed: int, what: str = "more like it") -> str:
    """The tail of a rate-limited line: " (N more like it since the last line)", or nothing."""
    return f" ({suppressed} {what} since the last line)" if suppressed else ""


class RedactSecrets(logging.Filter):
    """Replaces each secret string in the rendered message (and exception text) with ***."""

    def __init__(self, secrets: Iterable[str] = (), label: str = "agent"):
        super().__init__()
        self.secrets: list[str] = []
        self.label = label
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        """Mask these too (old ones stay masked: a line may still name a removed sink's)."""
        merged = set(self.secrets) | {s for s in secrets if s and len(s) >= 3}
        self.secrets = sorted(merged, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for s in self.secrets:
            if s in text:
                text = text.replace(s, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        record.process_label = self.label
        if self.secrets:
            record.msg = self.scrub(record.getMessage())
            record.args = ()
            if record.exc_info and record.exc_info[1] is not None:
                record.exc_text = self.scrub(logging.Formatter().formatException(record.exc_info))
                record.exc_info = None
        return True


def configure(label: str, secrets: Iterable[str] = (), level: int = logging.INFO) -> None:
    """Set up stderr logging for this process; `label` names it (supervisor, broker, sink:NAME)."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(RedactSecrets(secrets, label))
    root.addHandler(handler)
    root.setLevel(level)


def add_secrets(secrets: Iterable[str]) -> None:
    """Extend the masking of this process's log handlers (after a reload brought new secrets)."""
    for handler in logging.getLogger().handlers:
        for f in handler.filters:
            if isinstance(f, RedactSecrets):
                f.add(secrets)


def config_secrets(config) -> list[str]:
    """Every secret string a config holds: passwords (also those in password files), signing
    secrets and their keys' base64, URL credentials, and the HTTP options' secrets (header
    values, bearer tokens, proxy credentials, client key paths)."""
    from common.config_types import url_credentials
    from common.http_options import read_password_file, sink_http_secrets

    out: list[str] = []
    for s in config.sink:
        out += [s.password, s.secret, s.secret.removeprefix("whsec_")]
        user, pw = url_credentials(s.url)
        out.append(pw)
        out += sink_http_secrets(s)
        if s.password_file and not s.password:
            try:
                out.append(read_password_file(s.password_file))  # as the worker will read it
            except (OSError, ValueError):  # unreadable (the config check says so), or not UTF-8
                pass
    console = getattr(config, "console", None)
    if console is not None:
        out.append(console.tls_key)  # a key's path tells where a credential lives
    return [x for x in out if x]
