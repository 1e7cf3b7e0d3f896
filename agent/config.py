"""The agent's configuration: TOML into typed, validated objects.

Owns the config types (INTERFACE 3), their defaults, every validation rule,
the problems/warnings reported by `eventsink-agent check`, the derived paths
of a node (`Paths`), URL redaction, and the spec handed to child processes.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import re
import stat
import tomllib
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import msgspec

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
LIFECYCLE_EVENTS = ("eventsink_started", "eventsink_updated", "eventsink_stopped", "eventsink_ended")
SECRET_KEYS = frozenset({"password", "secret"})  # never echoed back in a problem
SINK_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
DEFAULT_PATH = "/etc/eventsink-agent/agent.toml"


class _Section(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class NodeConfig(_Section):
    address: str
    location: str
    role: str = "transcoding"


class AgentConfig(_Section):
    runtime_dir: str = "/run/eventsink-agent"
    state_dir: str = "/var/lib/eventsink-agent"
    publish_endpoint: str = ""  # "" = ipc://{runtime_dir}/publish.sock
    control_socket: str = ""  # "" = {runtime_dir}/control.sock
    metrics_listen: str = "127.0.0.1:9712"
    max_journal_mb: float = 1024
    max_message_kb: float = 256


class TuningConfig(_Section):
    connection_timeout: float = 7
    response_timeout: float = 30
    initial_retry_backoff: float = 1
    max_retry_backoff: float = 1800
    cache_expiration: float = 2
    media_streams_wait: float = 1
    max_background_posts: int = 1000


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

    def public_view(self) -> dict[str, Any]:
        """The sink's settings with every secret removed (for status and logs)."""
        return {"name": self.name, "url": redact_url(self.url), "version": self.version}

    def settings_key(self) -> tuple:
        """Everything that makes a sink 'changed' on reload."""
        return tuple(getattr(self, f) for f in self.__struct_fields__)


class Config(_Section):
    node: NodeConfig
    agent: AgentConfig = msgspec.field(default_factory=AgentConfig)
    tuning: TuningConfig = msgspec.field(default_factory=TuningConfig)
    sink: list[SinkConfig] = msgspec.field(default_factory=list)

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
    def of(cls, config: Config) -> "Paths":
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


# ---------------------------------------------------------------- loading


def load(path: str) -> LoadResult:
    """Read and validate PATH; never raises for a bad file."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        return LoadResult(None, [Problem("config", f"cannot read {path}: {exc.strerror or exc}")])
    return parse(raw, base_dir=os.path.dirname(os.path.abspath(path)))


def load_or_raise(path: str) -> Config:
    result = load(path)
    if result.problems or result.config is None:
        raise ConfigError(result.problems, path)
    return result.config


def parse(raw: bytes | str, base_dir: str = ".") -> LoadResult:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"\(at line (\d+)", str(exc))
        return LoadResult(None, [Problem("toml", f"not valid TOML: {exc}", int(m.group(1)) if m else None)])
    except RecursionError:
        return LoadResult(None, [Problem("toml", "not valid TOML: nested too deeply")])
    checker = _Checker(_KeyLines(text))
    config = checker.check(doc)
    return LoadResult(config if not checker.problems else None, checker.problems, checker.warnings)


class _KeyLines:
    """Finds the line of `key` inside `[table]` / the n-th `[[sink]]` (best effort)."""

    HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-\"]+)\s*\]\]?")
    KEY = re.compile(r"^\s*([A-Za-z0-9_\-]+)\s*=")

    def __init__(self, text: str):
        self.lines: dict[tuple, int] = {}
        table: tuple = ()
        counts: dict[str, int] = {}
        for no, line in enumerate(text.split("\n"), start=1):  # TOML breaks lines on \n only
            h = self.HEADER.match(line)
            if h:
                name = h.group(2).strip('"')
                if h.group(1) == "[[":
                    idx = counts.get(name, 0)
                    counts[name] = idx + 1
                    table = (name, idx)
                else:
                    table = (name,)
                self.lines.setdefault(table, no)
                continue
            k = self.KEY.match(line)
            if k:
                self.lines.setdefault(table + (k.group(1),), no)

    def of(self, *path) -> int | None:
        return self.lines.get(tuple(path))


def _type_name(tp: Any) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(
        tp, "a list of strings" if tp == list[str] else str(tp)
    )


class _Checker:
    def __init__(self, lines: _KeyLines):
        self.lines = lines
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []

    def problem(self, key: str, msg: str, *path) -> None:
        self.problems.append(Problem(key, msg, self.lines.of(*path)))

    def warn(self, key: str, msg: str, *path) -> None:
        self.warnings.append(Problem(key, msg, self.lines.of(*path)))

    # Structural checks: tables, unknown keys, types, required keys.
    def section(self, name: str, value: Any, struct: type, label: str, path: tuple) -> dict | None:
        if not isinstance(value, dict):
            self.problem(label, "must be a table", *path)
            return None
        out: dict[str, Any] = {}
        fields = {f.name: f for f in msgspec.structs.fields(struct)}
        for key, v in value.items():
            if key not in fields:
                self.problem(f"{label}.{key}", "unknown key", *path, key)
                continue
            f = fields[key]
            try:
                out[key] = msgspec.convert(v, f.type, strict=True)
            except msgspec.ValidationError:
                shown = f"a {type(v).__name__}" if key in SECRET_KEYS or key == "url" else f"{v!r:.60}"
                self.problem(f"{label}.{key}", f"must be {_type_name(f.type)} (got {shown})", *path, key)
        for f in fields.values():
            if f.required and f.name not in value:
                self.problem(f"{label}.{f.name}", "is required", *path)
        return out

    def check(self, doc: dict) -> Config | None:
        for key in doc:
            if key not in ("node", "agent", "tuning", "sink"):
                self.problem(key, "unknown key", key)
        if "node" not in doc:
            self.problem("node", "is required: a [node] table with address and location")
        node = self.section("node", doc.get("node", {}), NodeConfig, "node", ("node",))
        agent = self.section("agent", doc.get("agent", {}), AgentConfig, "agent", ("agent",))
        tuning = self.section("tuning", doc.get("tuning", {}), TuningConfig, "tuning", ("tuning",))
        sinks_raw = doc.get("sink", [])
        sinks: list[dict | None] = []
        if not isinstance(sinks_raw, list):
            self.problem("sink", "must be an array of tables: write [[sink]]", "sink")
        else:
            for i, s in enumerate(sinks_raw):
                label = f"sink[{i}]" + (f" ({s['name']})" if isinstance(s, dict) and isinstance(s.get("name"), str) else "")
                sinks.append(self.section("sink", s, SinkConfig, label, ("sink", i)))
        if node is not None:
            self.check_node(node)
        if agent is not None:
            self.check_agent(agent)
        if tuning is not None:
            self.check_tuning(tuning)
        names: dict[str, int] = {}
        for i, s in enumerate(sinks):
            if s is not None:
                self.check_sink(i, s, names)
        if self.problems:
            return None
        try:
            config = msgspec.convert(doc, Config, strict=False)
        except msgspec.ValidationError as exc:  # should have been caught above
            self.problem("config", str(exc))
            return None
        a = config.agent
        if not a.publish_endpoint:
            a.publish_endpoint = f"ipc://{a.runtime_dir}/publish.sock"
        if not a.control_socket:
            a.control_socket = os.path.join(a.runtime_dir, "control.sock")
        self.check_paths(config)
        for i, s in enumerate(config.sink):
            if config.node.location not in s.locations:
                self.warn(f"sink[{i}] ({s.name}).locations", f"sink not used at this node's location {config.node.location!r}", "sink", i, "locations")
        return None if self.problems else config

    def check_node(self, node: dict) -> None:
        addr = node.get("address")
        if isinstance(addr, str):
            try:
                ipaddress.ip_address(addr)
            except ValueError:
                self.problem("node.address", f"must be an IP address (got {addr!r:.60})", "node", "address")
        if node.get("location") == "":
            self.problem("node.location", "must not be empty", "node", "location")
        role = node.get("role")
        if isinstance(role, str) and role not in ROLES:
            self.problem("node.role", f"must be one of {', '.join(ROLES)} (got {role!r:.40})", "node", "role")

    def check_agent(self, agent: dict) -> None:
        for key in ("max_journal_mb", "max_message_kb"):
            v = agent.get(key)
            if isinstance(v, (int, float)) and v <= 0:
                self.problem(f"agent.{key}", "must be greater than 0", "agent", key)
        listen = agent.get("metrics_listen")
        if isinstance(listen, str) and listen and parse_listen(listen) is None:
            self.problem("agent.metrics_listen", f"must be HOST:PORT (got {listen!r:.60})", "agent", "metrics_listen")
        ep = agent.get("publish_endpoint")
        if isinstance(ep, str) and ep and not ep.startswith(("ipc://", "tcp://")):
            self.problem("agent.publish_endpoint", "must be an ipc:// or tcp:// endpoint", "agent", "publish_endpoint")
        for key in ("runtime_dir", "state_dir", "control_socket"):
            v = agent.get(key)
            if isinstance(v, str) and v and not os.path.isabs(v):
                self.problem(f"agent.{key}", "must be an absolute path", "agent", key)

    def check_paths(self, config: Config) -> None:
        a = config.agent
        for label, ep in (("agent.publish_endpoint", a.publish_endpoint), ("agent.runtime_dir", f"ipc://{a.runtime_dir}/supervisor.sock")):
            if ep.startswith("ipc://") and len(ep) - len("ipc://") > 106:
                self.problem(label, "socket path too long (ipc paths must stay under 107 characters)", *label.split("."))
        if len(a.control_socket) > 106:
            self.problem("agent.control_socket", "socket path too long (must stay under 107 characters)", "agent", "control_socket")

    def check_tuning(self, tuning: dict) -> None:
        for key, v in tuning.items():
            if isinstance(v, (int, float)) and v < 0:
                self.problem(f"tuning.{key}", f"must not be negative (got {v})", "tuning", key)
        for key in ("connection_timeout", "response_timeout", "initial_retry_backoff", "max_retry_backoff", "max_background_posts"):
            v = tuning.get(key)
            if isinstance(v, (int, float)) and v == 0:
                self.problem(f"tuning.{key}", "must be greater than 0", "tuning", key)
        init, mx = tuning.get("initial_retry_backoff", 1), tuning.get("max_retry_backoff", 1800)
        if isinstance(init, (int, float)) and isinstance(mx, (int, float)) and 0 < mx < init:
            self.problem("tuning.max_retry_backoff", "must not be less than initial_retry_backoff", "tuning", "max_retry_backoff")

    def check_sink(self, i: int, s: dict, names: dict[str, int]) -> None:
        name = s.get("name")
        label = f"sink[{i}]" + (f" ({name})" if isinstance(name, str) else "")
        at = ("sink", i)
        if isinstance(name, str):
            if not SINK_NAME_RE.match(name):
                self.problem(f"{label}.name", "must be 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit", *at, "name")
            if name in names:
                self.problem(f"{label}.name", f"duplicate sink name (also sink[{names[name]}])", *at, "name")
            names.setdefault(name, i)
        version = s.get("version")
        if isinstance(version, int) and version not in (1, 2):
            self.problem(f"{label}.version", f"must be 1 or 2 (got {version})", *at, "version")
        url = s.get("url")
        if isinstance(url, str):
            try:
                parts = urllib.parse.urlsplit(url)
                ok = parts.scheme in ("http", "https") and bool(parts.hostname)
                _ = parts.port
            except ValueError:
                ok = False
            if not ok:
                self.problem(f"{label}.url", f"must be an http:// or https:// URL with a host (got {redact_url(url)!r:.80})", *at, "url")
            elif parts.scheme == "https" and s.get("verify_tls") is False:
                self.warn(f"{label}.verify_tls", "false: the sink's TLS certificate is not checked", *at, "verify_tls")
        locs = s.get("locations")
        if isinstance(locs, list) and not locs:
            self.problem(f"{label}.locations", "must list at least one location", *at, "locations")
        if s.get("password") and s.get("password_file"):
            self.problem(f"{label}.password_file", "give password or password_file, not both", *at, "password_file")
        pf = s.get("password_file")
        if isinstance(pf, str) and pf:
            self.check_password_file(f"{label}.password_file", pf, at)
        ca = s.get("ca_file")
        if isinstance(ca, str) and ca and not os.path.isfile(ca):
            self.problem(f"{label}.ca_file", f"no such file: {ca}", *at, "ca_file")
        for key, lo, hi in (("bulk_max_events", 1, 10000), ("max_in_flight", 1, 64)):
            v = s.get(key)
            if isinstance(v, int) and not lo <= v <= hi:
                self.problem(f"{label}.{key}", f"must be between {lo} and {hi} (got {v})", *at, key)
        bi = s.get("bulk_interval")
        if isinstance(bi, (int, float)) and bi <= 0:
            self.problem(f"{label}.bulk_interval", "must be greater than 0", *at, "bulk_interval")
        secret = s.get("secret")
        if isinstance(secret, str) and secret:
            try:
                if not secret.startswith("whsec_") or not secret_key(secret):
                    raise ValueError
            except (ValueError, binascii.Error):
                self.problem(f"{label}.secret", "must be 'whsec_' followed by a base64 key (Standard Webhooks)", *at, "secret")
        events = s.get("events")
        if isinstance(events, list):
            for ev in events:
                if ev not in BUS_EVENTS + LIFECYCLE_EVENTS:
                    self.problem(f"{label}.events", f"unknown event {ev!r:.60}", *at, "events")

    def check_password_file(self, key: str, path: str, at: tuple) -> None:
        try:
            st = os.stat(path)
            with open(path, "rb"):
                pass
        except OSError as exc:
            self.problem(key, f"cannot read {path}: {exc.strerror or exc}", *at, "password_file")
            return
        if st.st_mode & stat.S_IROTH:
            self.warn(key, f"{path} is readable by other users (chmod o-r)", *at, "password_file")


def parse_listen(listen: str) -> tuple[str, int] | None:
    """'127.0.0.1:9712' / '[::1]:9712' -> (host, port); None when malformed."""
    m = re.match(r"^\[?([^\[\]]+?)\]?:(\d{1,5})$", listen)
    if not m or not 0 <= int(m.group(2)) <= 65535:
        return None
    return m.group(1), int(m.group(2))


def resolve_secrets(config: Config) -> Config:
    """A copy with each sink's password_file read into password (for child specs)."""
    sinks = []
    for s in config.sink:
        if s.password_file and not s.password:
            try:
                with open(s.password_file, encoding="utf-8") as fh:
                    pw = fh.read().strip()
            except OSError as exc:
                raise ConfigError([Problem(f"sink ({s.name}).password_file", f"cannot read {s.password_file}: {exc.strerror}")])
            s = msgspec.structs.replace(s, password=pw)
        sinks.append(s)
    return msgspec.structs.replace(config, sink=sinks)


def encode_spec(config: Config, sink: str | None = None, *, paused: bool = False) -> bytes:
    """A child's spec; `paused`: a worker starts with its publisher stopped (its sink has an alarm)."""
    spec: dict[str, Any] = {"config": config}
    if sink is not None:
        spec["sink"] = sink
    if paused:
        spec["paused"] = True
    return msgspec.json.encode(spec)


class _Spec(msgspec.Struct):
    config: Config
    sink: str | None = None
    paused: bool = False


def decode_spec(raw: bytes) -> tuple[Config, str | None]:
    spec = msgspec.json.decode(raw, type=_Spec)
    return spec.config, spec.sink


def decode_worker_spec(raw: bytes) -> tuple[Config, str | None, bool]:
    """(config, sink name, paused) of a worker's spec."""
    spec = msgspec.json.decode(raw, type=_Spec)
    return spec.config, spec.sink, spec.paused
