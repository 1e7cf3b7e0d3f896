"""The agent's configuration: TOML into typed, validated objects.

Owns loading (the problems and warnings reported by `eventsink-agent check`),
resolving secret files, and the spec handed to child processes. The types are
in common/config_types.py (imported from there), the validation rules in
common/config_check.py, those on a sink's HTTP options and the files it names in
common/http_options.py.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable
from typing import Any

import msgspec

from common import http_options
from common.config_check import Checker, KeyLines
from common.config_types import Config, ConfigError, LoadResult, Problem, SinkConfig

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
    checker = Checker(KeyLines(text))
    config = checker.check(doc)
    return LoadResult(config if not checker.problems else None, checker.problems, checker.warnings)


def resolve_secrets(config: Config) -> Config:
    """A copy with each sink's password_file read into password and its bearer_token_file into
    bearer_token (for child specs: secrets reach a child on its stdin, never its argv)."""
    sinks = []
    for s in config.sink:
        if s.password_file and not s.password:
            s = msgspec.structs.replace(
                s, password=_read_secret_file(s, "password_file", http_options.read_password_file)
            )
        if s.bearer_token_file:
            s = msgspec.structs.replace(
                s, bearer_token=_read_secret_file(s, "bearer_token_file", http_options.read_bearer_token)
            )
        sinks.append(s)
    return msgspec.structs.replace(config, sink=sinks)


def _read_secret_file(sink: SinkConfig, key: str, read: Callable[[str], str]) -> str:
    path = getattr(sink, key)
    try:
        return read(path)
    except OSError as exc:
        raise ConfigError(
            [Problem(f"sink ({sink.name}).{key}", f"cannot read {path}: {exc.strerror or exc}")]
        ) from None
    except ValueError as exc:
        raise ConfigError([Problem(f"sink ({sink.name}).{key}", f"{path}: {exc}")]) from None


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
