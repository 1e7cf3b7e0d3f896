"""What every step of the .deb build shares (packaging/build_deb.py, packaging/deb_docs.py):
the package's names and paths, `BuildError`, the progress log, running a tool, the files
put into the staging tree, and the project's version."""

from __future__ import annotations

import ast
import gzip
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PACKAGE = "eventsink-agent"
VENV_PATH = "/opt/eventsink-agent"
DOC_DIR = f"usr/share/doc/{PACKAGE}"
CONFFILE = "/etc/eventsink-agent/agent.toml"
COMMANDS = ("eventsink-agent", "eventsinkctl")


class BuildError(Exception):
    """A build step failed; the message says which and why."""


_STARTED = time.monotonic()


def log(msg: str) -> None:
    print(f"build_deb: [{time.monotonic() - _STARTED:5.1f} s] {msg}", file=sys.stderr, flush=True)


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, check=True, text=True, **kw)
    except subprocess.CalledProcessError as exc:
        out = (exc.stderr or "") + (exc.stdout or "") if kw.get("capture_output") else ""
        raise BuildError(f"{' '.join(cmd[:4])} ... failed with exit status {exc.returncode}\n{out}") from None
    except FileNotFoundError:
        raise BuildError(f"{cmd[0]} not found: install the Debian packages of `make apt`") from None


def project_version() -> str:
    """common.__version__ (the agent's version), read without importing the project."""
    with open(os.path.join(ROOT, "common", "__init__.py"), encoding="utf-8") as fh:
        tree = ast.parse(fh.read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "__version__" for t in node.targets):
            return ast.literal_eval(node.value)
    raise BuildError("common/__init__.py has no __version__")


def install_file(src: str, dest: str, mode: int = 0o644) -> None:
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    shutil.copyfile(src, dest)
    os.chmod(dest, mode)


def gzip_file(src: str, dest: str) -> None:
    """gzip -9n: no name, no timestamp, so builds are reproducible."""
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    with open(src, "rb") as fh:
        data = fh.read()
    with open(dest, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as gz:
        gz.write(data)
    os.chmod(dest, 0o644)
