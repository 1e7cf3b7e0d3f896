"""The agent's configuration types (README, "Configuration") and their defaults: the
sections as typed structs, a problem found in a file, the derived paths of a node
(`Paths`), URL redaction, and the names and patterns the checks share. Loading a
file is common/config.py's; the rules, common/config_check.py's.
"""

from __future__ import annotations

import base64
import os
import re
import urllib.parse
from dataclasses import dataclass, field
from typing import ClassVar

import msgspec

from common.runtime_dir import DEFAULT_RUNTIME_DIR

ROLES = ("transcoding", "proxying")
BUS_EVENTS = (
    "conference_started",
    "conference_updated",
    "conference_ended",
    "participant_connected",
    "participant_updated",
    "participant_disconnected",
    "participant_media_stream_window",
    "participant_media_streams_destroyed",
)
# Never echoed back in a problem (a mistyped value may still be the secret).
SECRET_KEYS = frozenset({"password", "secret", "headers", "client_key", "proxy", "bearer_token", "tls_key"})
# SinkConfig fields that only resolve_secrets() fills (from a file): not keys of the TOML file.
RESOLVED_FIELDS = frozenset({"bearer_token"})
SINK_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
DEFAULT_PATH = "/etc/eventsink-agent/agent.toml"


class _Section(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # One line per key, for docs/config.md (agent/reference/config.py); a ClassVar is not a key.
    KEY_HELP: ClassVar[dict[str, str]] = {}


class NodeConfig(_Section):
    address: str
    location: str
    role: str = "transcoding"

    KEY_HELP = {
        "address": "this node's primary IP address: the `node` field of every event",
        "location": "this node's system location: the sinks that list it run here",
        "role": '`"transcoding"` or `"proxying"` (a Proxying Edge Node sends only the sinks\' lifecycle events)',
    }


class AgentConfig(_Section):
    runtime_dir: str = DEFAULT_RUNTIME_DIR
    state_dir: str = "/var/lib/eventsink-agent"
    publish_endpoint: str = ""  # "" = ipc://{runtime_dir}/publish.sock
    control_socket: str = ""  # "" = {runtime_dir}/control.sock
    metrics_listen: str = "127.0.0.1:9712"
    max_journal_mb: float = 1024
    max_message_kb: float = 256
    retention_hours: float = 24  # delivered events stay this long, for replay (0 = not kept)

    KEY_HELP = {
        "runtime_dir": "directory of the sockets and the runtime lock file",
        "state_dir": "directory of the journal (the durable backlog), the cursor shadows and the state lock file",
        "publish_endpoint": "ZeroMQ endpoint conference processes connect to; empty means `ipc://{runtime_dir}/publish.sock`",
        "control_socket": "path of the control socket (`eventsinkctl`); empty means `{runtime_dir}/control.sock`",
        "metrics_listen": "`HOST:PORT` the Prometheus metrics are served on (`[::1]:9712` for IPv6)",
        "max_journal_mb": "bound of the journal on disk, in MiB; above it bus messages are rejected (`journal_full`)",
        "max_message_kb": "a bus message larger than this many KiB is rejected (`too_large`)",
        "retention_hours": "hours delivered events stay in the journal, for replay (0 = not kept)",
    }


class TuningConfig(_Section):
    connection_timeout: float = 7
    response_timeout: float = 30
    initial_retry_backoff: float = 1
    max_retry_backoff: float = 1800
    cache_expiration: float = 2
    media_streams_wait: float = 1
    max_background_posts: int = 1000

    KEY_HELP = {
        "connection_timeout": "seconds to connect to a sink",
        "response_timeout": "seconds to receive the answer once connected",
        "initial_retry_backoff": "seconds of the first retry wait; each further failure doubles it",
        "max_retry_backoff": "seconds; a retry wait above this raises the backoff alarm and stops the sink's publisher",
        "cache_expiration": "seconds the media-stream cache holds an entry",
        "media_streams_wait": "seconds `participant_disconnected` waits for its media streams (version 1 sinks)",
        "max_background_posts": "undelivered events per sink above which the concurrency alarm is raised",
    }


class SinkConfig(_Section):
    name: str
    url: str
    locations: list[str]
    description: str = ""
    version: int = 2
    username: str = ""
    password: str = ""
    password_file: str = ""
    verify_tls: bool = True
    ca_file: str = ""
    bulk: bool = False
    bulk_max_events: int = 100
    bulk_interval: float = 1.0
    max_in_flight: int = 1
    secret: str = ""
    events: list[str] = msgspec.field(default_factory=list)
    # HTTP options (README, "HTTP options of a sink"; checked in common/http_options.py)
    headers: dict[str, str] = msgspec.field(default_factory=dict)  # values are secrets
    bearer_token_file: str = ""
    client_cert: str = ""
    client_key: str = ""  # its path is a secret too
    proxy: str = ""  # "http://[user:pass@]host:port"
    compression: str = "none"  # or "gzip"
    http_version: str = "1.1"  # or "2"
    max_rate: float = 0  # events per second (bulk: inner events); 0 = no limit
    # Poison events: an event a sink keeps refusing (README, "Configuration")
    dead_letter_after: int = 0  # 0 = never set an event aside
    dead_letter_statuses: list[int] = msgspec.field(default_factory=lambda: [400, 413, 415, 422])
    # Filled by resolve_secrets() from bearer_token_file, for the worker's spec only.
    bearer_token: str = ""

    KEY_HELP = {
        "name": "the sink's unique name: 1-64 of `[A-Za-z0-9_.-]` (it appears in URLs, metric labels and identities)",
        "url": "where events are POSTed (`http://` or `https://`); credentials in it are secrets",
        "locations": "the system locations whose nodes run this sink",
        "description": "free text for the operator",
        "version": "1: media streams merged into `participant_disconnected`; 2: separate media events",
        "username": "Basic authentication user (case-sensitive); empty means no authentication",
        "password": "Basic authentication password (a secret)",
        "password_file": "file whose first line is the password (instead of `password`)",
        "verify_tls": "verify the sink's certificate (https URLs only)",
        "ca_file": "PEM bundle to trust instead of the system store",
        "bulk": "send `eventsink_bulk` envelopes of several events",
        "bulk_max_events": "most events in one bulk envelope (1-10000)",
        "bulk_interval": "seconds an event waits at most to fill a bulk envelope",
        "max_in_flight": "POSTs under way at once (1-64); 1 keeps events in order, more pipelines them",
        "secret": "`whsec_` + base64: POSTs are signed (Standard Webhooks); empty means unsigned",
        "events": "when not empty, only these bus events are sent (`eventsink_*` always are)",
        "headers": "extra request headers; values are secrets, the agent's own headers cannot be set",
        "bearer_token_file": "file whose first line is sent as `Authorization: Bearer ...`; not with `username`",
        "client_cert": "PEM certificate for mutual TLS (https only); needs `client_key`",
        "client_key": "its unencrypted PEM private key, not readable by other users; the path is a secret",
        "proxy": "`http://[user:pass@]host:port` (or https) every POST of this sink goes through",
        "compression": '`"none"` or `"gzip"` (bodies sent with `Content-Encoding: gzip`)',
        "http_version": '`"1.1"` or `"2"` (HTTP/2: ALPN over TLS, prior knowledge for http://)',
        "max_rate": "at most this many events per second (bulk: inner events); 0 means no limit",
        "dead_letter_after": "answers in `dead_letter_statuses` after which an event is set aside; 0 means never",
        "dead_letter_statuses": "4xx statuses (never 408 or 429) that count towards `dead_letter_after`",
        "bearer_token": "not a key of the file: read from `bearer_token_file` into the worker's spec",
    }

    def __repr__(self) -> str:
        """Every setting, with each secret masked (a repr ends up in logs and tracebacks)."""
        shown = []
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if name in ("url", "proxy"):
                value = redact_url(value)
            elif name == "headers":
                value = {k: "***" for k in value}
            elif name in SECRET_KEYS and value:
                value = "***"
            shown.append(f"{name}={value!r}")
        return f"SinkConfig({', '.join(shown)})"


class ConsoleConfig(_Section):
    """The browser console (docs/console.md): off unless `listen` is set; checked in config_check.check_console."""

    listen: str = ""  # "" = no console
    password_file: str = "/etc/eventsink-agent/console.passwd"
    tls_cert: str = ""
    tls_key: str = ""  # its path is a secret too
    session_hours: float = 8

    KEY_HELP = {
        "listen": (
            "`HOST:PORT` the browser console is served on; empty means no console. "
            "Beyond loopback it needs `tls_cert` and `tls_key`"
        ),
        "password_file": (
            "the hash of the console user `admin`'s password, written by `eventsink-agent console-password`"
        ),
        "tls_cert": "PEM certificate (chain): with `tls_key`, the console speaks HTTPS",
        "tls_key": "its unencrypted PEM private key, not readable by other users",
        "session_hours": "hours a console login lasts (it also ends at Log out)",
    }


class Config(_Section):
    node: NodeConfig
    agent: AgentConfig = msgspec.field(default_factory=AgentConfig)
    tuning: TuningConfig = msgspec.field(default_factory=TuningConfig)
    sink: list[SinkConfig] = msgspec.field(default_factory=list)
    console: ConsoleConfig = msgspec.field(default_factory=ConsoleConfig)

    KEY_HELP = {
        "node": "this node",
        "console": "the browser console (off unless `listen` is set)",
        "agent": "the agent's files, endpoints and bounds (read at start; a reload does not change them)",
        "tuning": "global delivery tuning, for all sinks",
        "sink": "one table per event sink",
    }

    def sinks_here(self) -> list[SinkConfig]:
        """The sinks that run on this node: those listing the node's location."""
        return [s for s in self.sink if self.node.location in s.locations]

    def sink_named(self, name: str) -> SinkConfig | None:
        return next((s for s in self.sink if s.name == name), None)


@dataclass(frozen=True)
class Problem:
    key: str
    message: str
    line: int | None = None

    def render(self, path: str = "") -> str:
        where = f"{path}:{self.line}: " if self.line else (f"{path}: " if path else "")
        return f"{where}{self.key}: {self.message}"


class ConfigError(Exception):
    """A config that cannot be used; `problems` lists every reason."""

    def __init__(self, problems: list[Problem], path: str = ""):
        self.problems = problems
        self.path = path
        super().__init__("; ".join(p.render(path) for p in problems))


@dataclass
class LoadResult:
    config: Config | None
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)


@dataclass(frozen=True)
class Paths:
    """Every file and endpoint of one node, derived from the config."""

    runtime_dir: str
    state_dir: str
    publish_endpoint: str
    control_socket: str
    fanout_endpoint: str
    supervisor_endpoint: str
    journal_path: str
    runtime_lock: str
    state_lock: str

    @classmethod
    def of(cls, config: Config) -> Paths:
        a = config.agent
        return cls(
            runtime_dir=a.runtime_dir,
            state_dir=a.state_dir,
            publish_endpoint=a.publish_endpoint,
            control_socket=a.control_socket,
            fanout_endpoint=f"ipc://{a.runtime_dir}/fanout.sock",
            supervisor_endpoint=f"ipc://{a.runtime_dir}/supervisor.sock",
            journal_path=os.path.join(a.state_dir, "journal.sqlite3"),
            runtime_lock=os.path.join(a.runtime_dir, "agent.lock"),
            state_lock=os.path.join(a.state_dir, "agent.lock"),
        )


def redact_url(url: str) -> str:
    """The URL without any user:password part."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def url_credentials(url: str) -> tuple[str, str]:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.unquote(parts.username or ""), urllib.parse.unquote(parts.password or "")


def secret_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret (`whsec_` + base64)."""
    return base64.b64decode(secret.removeprefix("whsec_"), validate=True)


def parse_listen(listen: str) -> tuple[str, int] | None:
    """'127.0.0.1:9712' / '[::1]:9712' -> (host, port); None when malformed."""
    m = re.match(r"^\[?([^\[\]]+?)\]?:(\d{1,5})$", listen)
    if not m or not 0 <= int(m.group(2)) <= 65535:
        return None
    return m.group(1), int(m.group(2))
