"""Logging for every process of the agent: one line per record on stderr, the
`support.events` logger for delivery and alarm reasons, and a filter that
masks every configured secret before a record is written."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable

SUPPORT = "support.events"
FORMAT = "%(asctime)s %(levelname)s %(name)s [%(process_label)s]: %(message)s"


class RedactSecrets(logging.Filter):
    """Replaces each secret string in the rendered message (and exception text) with ***."""

    def __init__(self, secrets: Iterable[str] = (), label: str = "agent"):
        super().__init__()
        self.secrets = sorted({s for s in secrets if s and len(s) >= 3}, key=len, reverse=True)
        self.label = label

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


def config_secrets(config) -> list[str]:
    """Every secret string a config holds: passwords, signing secrets, URL credentials."""
    from agent.config import url_credentials

    out: list[str] = []
    for s in config.sink:
        out += [s.password, s.secret]
        user, pw = url_credentials(s.url)
        out.append(pw)
    return [x for x in out if x]
