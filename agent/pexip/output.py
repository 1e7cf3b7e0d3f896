"""What `import-pexip` writes: the agent.toml text and the password files beside it (docs/import-pexip.md).

Owns rendering an import plan (agent/pexip/importer.py) as TOML (the project has
no TOML writer dependency, and this needs only strings, numbers, booleans and
lists of strings), proving the text passes `check` before anything is written,
and writing: `-o PATH` and every `password_file` are created with O_EXCL (never
over an existing file; on any failure what was created is removed again), the
password files mode 0600, and every path written into the TOML absolute. A
password is never written into the TOML.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from common import config as agent_config

HEADER = """\
# agent.toml written by `eventsink-agent import-pexip` from what a Pexip Infinity
# Management Node's configuration API answered. Check it before use:
#   eventsink-agent check --config PATH
"""
ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}
# Stands in for a password while the text is checked without its password files existing yet.
PLACEHOLDER = "placeholder"


class OutputError(Exception):
    """The output cannot be written (or would not pass check): one plain sentence."""


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return (
        '"'
        + "".join(ESCAPES.get(c) or (f"\\u{ord(c):04x}" if ord(c) < 0x20 or ord(c) == 0x7F else c) for c in str(value))
        + '"'
    )


def render(plan: Any, secrets: dict[str, tuple[str, str]]) -> str:
    """The TOML; `secrets` maps a sink name to ("password" or "password_file", its value)."""
    lines = [HEADER.rstrip("\n")]
    lines += [f"#   {what}: {toml_value(os.path.abspath(path))}" for what, path in plan.sources.items()]
    lines += ["", "[node]"] + [f"{k} = {toml_value(v)}" for k, v in plan.node.items()]
    if plan.tuning:
        lines += ["", '[tuning]                        # Pexip\'s global "Advanced event sink tuning" (es_*)']
        lines += [f"{k} = {toml_value(v)}" for k, v in plan.tuning.items()]
    for s in plan.sinks:
        origin = f"Pexip event sink {s.pexip_id}" if s.pexip_id is not None else "Pexip event sink"
        lines += ["", f"# {origin}: {toml_value(s.pexip_name)}", "[[sink]]", f"name = {toml_value(s.name)}"]
        lines += [f"{k} = {toml_value(v)}" for k, v in s.keys.items()]
        if s.name in secrets:
            key, value = secrets[s.name]
            lines.append(f"{key} = {toml_value(value)}")
        lines.append(f"locations = {toml_value(s.locations)}")
    return "\n".join(lines) + "\n"


def prove_it_passes_check(plan: Any, with_passwords: bool) -> None:
    """Run `check`'s rules on what will be written; its problems end the import before any file exists."""
    secrets = {s.name: ("password", PLACEHOLDER) for s in plan.sinks if s.password and with_passwords}
    result = agent_config.parse(render(plan, secrets))
    if result.problems:
        first = result.problems[0]
        more = f" (and {len(result.problems) - 1} more)" if len(result.problems) > 1 else ""
        raise OutputError(
            f"the config it would write does not pass check, so nothing is written: {first.key}: {first.message}{more}"
        )
    for w in result.warnings:
        if not (w.key.endswith(".locations") and w.message.startswith("is empty")):  # said already, by the import
            plan.warnings.append(f"check: {w.key}: {w.message}")


def write(plan: Any, output: str | None) -> list[str]:
    """Writes the TOML to stdout or `output` (and the password files beside it); the paths written."""
    if not output:
        for s in plan.sinks:
            if s.password:
                plan.warnings.append(
                    f"sink {s.name!r}: its password is left out (it never goes into the TOML): "
                    f"give -o PATH to have it written to a password_file beside the config"
                )
        sys.stdout.write(render(plan, {}))
        sys.stdout.flush()
        return []
    toml_path = os.path.abspath(output)
    folder = os.path.dirname(toml_path)
    if not os.path.isdir(folder):
        raise OutputError(f"cannot write {toml_path}: the directory {folder} does not exist")
    password_files = {
        s.name: (os.path.join(folder, f"{s.name}.password"), s.password) for s in plan.sinks if s.password
    }
    files = [(toml_path, render(plan, {n: ("password_file", p) for n, (p, _) in password_files.items()}), 0o644)]
    files += [(p, secret + "\n", 0o600) for p, secret in password_files.values()]
    for path, _, _ in files:
        if os.path.lexists(path):
            raise OutputError(
                f"{path} already exists: import-pexip never writes over a file "
                f"(choose another -o PATH, or move it away)"
            )
    _create_all(files)
    return [path for path, _, _ in files]


def _create_all(files: list[tuple[str, str, int]]) -> None:
    created: list[str] = []
    try:
        for path, text, mode in files:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
            created.append(path)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                if mode == 0o600:  # exact, whatever the umask
                    os.fchmod(fh.fileno(), mode)
                fh.write(text)
    except OSError as exc:
        for path in created:
            os.unlink(path)
        raise OutputError(f"cannot write {exc.filename or path}: {exc.strerror or exc}") from None
