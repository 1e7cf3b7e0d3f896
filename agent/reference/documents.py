"""The generated reference documents in docs/, and the command that writes them.

Owns the list of generated files (`GENERATED`: path -> function returning its
text) and comparing them with what is committed. `python -m agent.reference
--write` (or `make docs`) regenerates them; `--check` exits 1 naming each file
that is out of date, as tests/agent/test_reference.py does. The other pages
of docs/ (docs/README.md lists them all) are written by hand.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from agent.reference.api import control_api_markdown, openapi_json
from agent.reference.commands import commands_markdown
from agent.reference.config import config_markdown
from agent.reference.events import events_markdown
from agent.reference.metrics import metrics_markdown

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GENERATED: dict[str, Callable[[], str]] = {
    "docs/config.md": config_markdown,
    "docs/metrics.md": metrics_markdown,
    "docs/control-api.md": control_api_markdown,
    "docs/openapi.json": openapi_json,
    "docs/events.md": events_markdown,
    "docs/commands.md": commands_markdown,
}
REGENERATE = "python -m agent.reference --write (or: make docs)"


def stale_documents(repo: str = REPO) -> list[str]:
    """The generated files whose committed text differs from what the code generates now."""
    stale = []
    for relpath, generate in GENERATED.items():
        try:
            with open(os.path.join(repo, relpath), encoding="utf-8") as fh:
                committed = fh.read()
        except FileNotFoundError:
            committed = None
        if committed != generate():
            stale.append(relpath)
    return stale


def write_documents(repo: str = REPO) -> list[str]:
    """Write every generated file; returns those that changed."""
    changed = stale_documents(repo)
    for relpath in changed:
        with open(os.path.join(repo, relpath), "w", encoding="utf-8") as fh:
            fh.write(GENERATED[relpath]())
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent.reference", description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="regenerate the files in docs/")
    mode.add_argument("--check", action="store_true", help="exit 1 when a generated file is out of date")
    args = parser.parse_args(argv)
    if args.write:
        for relpath in write_documents():
            print(f"wrote {relpath}")
        return 0
    stale = stale_documents()
    for relpath in stale:
        print(f"{relpath} is out of date: run {REGENERATE}", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
