"""The rules `eventsink-agent check` applies to a config (README, "Configuration").

Owns the structural checks (tables, unknown keys, types, required keys), the
rules on each section's values, and finding the line of a key in the TOML text,
so that each problem is reported as one line with its key and line. A sink's
HTTP options and the files it names are checked by common/http_options.py.
"""

from __future__ import annotations

import binascii
import ipaddress
import os
import re
import urllib.parse
from typing import Any

import msgspec

from common import http_options
from common.config_types import (
    BUS_EVENTS,
    RESOLVED_FIELDS,
    ROLES,
    SECRET_KEYS,
    SINK_NAME_RE,
    AgentConfig,
    Config,
    ConsoleConfig,
    NodeConfig,
    Problem,
    SinkConfig,
    TuningConfig,
    parse_listen,
    redact_url,
    secret_key,
)
from common.console_check import check_console
from common.vocabulary import LIFECYCLE_EVENTS


class KeyLines:
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
    compound = {list[str]: "a list of strings", list[int]: "a list of integers", dict[str, str]: "a table of strings"}
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false", **compound}.get(tp, str(tp))


class Checker:
    """Every configuration rule (README, "Configuration") on a parsed TOML document: problems and
    warnings with key and line."""

    def __init__(self, lines: KeyLines):
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
            if key not in fields or (struct is SinkConfig and key in RESOLVED_FIELDS):
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
            if key not in ("node", "agent", "tuning", "sink", "console"):
                self.problem(key, "unknown key", key)
        if "node" not in doc:
            self.problem("node", "is required: a [node] table with address and location")
        node, agent, tuning, console, sinks = self.sections(doc)
        self.check_sections(node, agent, tuning, console, sinks)
        if self.problems:
            return None
        return self.config_of(doc)

    def sections(self, doc: dict) -> tuple:
        """Each table of DOC checked against its type: (node, agent, tuning, console, [sink...]), None if unusable."""
        node = self.section("node", doc.get("node", {}), NodeConfig, "node", ("node",))
        agent = self.section("agent", doc.get("agent", {}), AgentConfig, "agent", ("agent",))
        tuning = self.section("tuning", doc.get("tuning", {}), TuningConfig, "tuning", ("tuning",))
        console = self.section("console", doc.get("console", {}), ConsoleConfig, "console", ("console",))
        sinks_raw = doc.get("sink", [])
        sinks: list[dict | None] = []
        if not isinstance(sinks_raw, list):
            self.problem("sink", "must be an array of tables: write [[sink]]", "sink")
        else:
            for i, s in enumerate(sinks_raw):
                label = f"sink[{i}]" + (
                    f" ({s['name']})" if isinstance(s, dict) and isinstance(s.get("name"), str) else ""
                )
                sinks.append(self.section("sink", s, SinkConfig, label, ("sink", i)))
        return node, agent, tuning, console, sinks

    def check_sections(self, node, agent, tuning, console, sinks: list[dict | None]) -> None:
        """The rules on each usable table's values."""
        if node is not None:
            self.check_node(node)
        if agent is not None:
            self.check_agent(agent)
        if tuning is not None:
            self.check_tuning(tuning)
        if console is not None:
            check_console(console, self.problem, self.warn)
        names: dict[str, int] = {}
        for i, s in enumerate(sinks):
            if s is not None:
                self.check_sink(i, s, names)

    def config_of(self, doc: dict) -> Config | None:
        """DOC, free of problems so far, as a Config with its derived defaults; then the rules on the whole."""
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
            if s.locations and config.node.location not in s.locations:
                self.warn(
                    f"sink[{i}] ({s.name}).locations",
                    f"sink not used at this node's location {config.node.location!r}",
                    "sink",
                    i,
                    "locations",
                )
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
        hours = agent.get("retention_hours")
        if isinstance(hours, (int, float)) and hours < 0:
            self.problem("agent.retention_hours", f"must not be negative (got {hours})", "agent", "retention_hours")
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
        for label, ep in (
            ("agent.publish_endpoint", a.publish_endpoint),
            ("agent.runtime_dir", f"ipc://{a.runtime_dir}/supervisor.sock"),
        ):
            if ep.startswith("ipc://") and len(ep) - len("ipc://") > 106:
                self.problem(
                    label, "socket path too long (ipc paths must stay under 107 characters)", *label.split(".")
                )
        if len(a.control_socket) > 106:
            self.problem(
                "agent.control_socket",
                "socket path too long (must stay under 107 characters)",
                "agent",
                "control_socket",
            )

    def check_tuning(self, tuning: dict) -> None:
        for key, v in tuning.items():
            if isinstance(v, (int, float)) and v < 0:
                self.problem(f"tuning.{key}", f"must not be negative (got {v})", "tuning", key)
        for key in (
            "connection_timeout",
            "response_timeout",
            "initial_retry_backoff",
            "max_retry_backoff",
            "max_background_posts",
        ):
            v = tuning.get(key)
            if isinstance(v, (int, float)) and v == 0:
                self.problem(f"tuning.{key}", "must be greater than 0", "tuning", key)
        init, mx = tuning.get("initial_retry_backoff", 1), tuning.get("max_retry_backoff", 1800)
        if isinstance(init, (int, float)) and isinstance(mx, (int, float)) and 0 < mx < init:
            self.problem(
                "tuning.max_retry_backoff", "must not be less than initial_retry_backoff", "tuning", "max_retry_backoff"
            )

    def check_sink_url(self, s: dict, label: str, at: tuple) -> None:
        url = s.get("url")
        if not isinstance(url, str):
            return
        try:
            parts = urllib.parse.urlsplit(url)
            ok = parts.scheme in ("http", "https") and bool(parts.hostname)
            _ = parts.port
        except ValueError:
            ok = False
        if not ok:
            self.problem(
                f"{label}.url",
                f"must be an http:// or https:// URL with a host (got {redact_url(url)!r:.80})",
                *at,
                "url",
            )
        elif parts.scheme == "https" and s.get("verify_tls") is False:
            self.warn(f"{label}.verify_tls", "false: the sink's TLS certificate is not checked", *at, "verify_tls")

    def check_sink(self, i: int, s: dict, names: dict[str, int]) -> None:
        name = s.get("name")
        label = f"sink[{i}]" + (f" ({name})" if isinstance(name, str) else "")
        at = ("sink", i)
        if isinstance(name, str):
            self.check_sink_name(i, name, label, names)
        version = s.get("version")
        if isinstance(version, int) and version not in (1, 2):
            self.problem(f"{label}.version", f"must be 1 or 2 (got {version})", *at, "version")
        self.check_sink_url(s, label, at)
        locs = s.get("locations")
        if isinstance(locs, list) and not locs:  # an import can produce one (docs/import-pexip.md)
            self.warn(f"{label}.locations", "is empty: the sink runs on no node", *at, "locations")
        if s.get("password") and s.get("password_file"):
            self.problem(f"{label}.password_file", "give password or password_file, not both", *at, "password_file")
        pf = s.get("password_file")
        if isinstance(pf, str) and pf:
            http_options.check_password_file(pf, f"{label}.password_file", at, self.problem, self.warn)
        ca = s.get("ca_file")
        if isinstance(ca, str) and ca:
            http_options.check_ca_file(ca, f"{label}.ca_file", at, self.problem)
        http_options.check_http_options(s, label, at, self.problem, self.warn)
        self.check_sink_delivery(s, label, at)

    def check_sink_name(self, i: int, name: str, label: str, names: dict[str, int]) -> None:
        """A sink's name: well formed and not another sink's (NAMES: first index of each name so far)."""
        at = ("sink", i)
        if not SINK_NAME_RE.match(name):
            self.problem(
                f"{label}.name",
                "must be 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit",
                *at,
                "name",
            )
        if name in names:
            self.problem(f"{label}.name", f"duplicate sink name (also sink[{names[name]}])", *at, "name")
        names.setdefault(name, i)

    def check_sink_delivery(self, s: dict, label: str, at: tuple) -> None:
        """A sink's delivery settings: bulk and in-flight bounds, the signing secret, the events it takes."""
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
                self.problem(
                    f"{label}.secret", "must be 'whsec_' followed by a base64 key (Standard Webhooks)", *at, "secret"
                )
        events = s.get("events")
        if isinstance(events, list):
            for ev in events:
                if ev not in BUS_EVENTS + LIFECYCLE_EVENTS:
                    self.problem(f"{label}.events", f"unknown event {ev!r:.60}", *at, "events")
