"""`eventsinkctl` stays a small program: it imports the commands' descriptions,
never their actions (agent/commands/__init__.py tells the pattern), and none of
the agent's heavy modules, for any command (docs/control-api.md).

Each check runs a fresh interpreter, so what an earlier test imported cannot hide
an import, and lists what it finds in sys.modules.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from agent.commands.registry import COMMANDS
from tests.agent.control_fakes import STATUS

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The server side and what only it needs: the bus (pyzmq), delivery (pycurl), the journal (sqlite3),
# bodies and config (msgspec, common.config), the control server and its actions, the supervision, and http.client
# (the client speaks its own request).
SERVER_SIDE = (
    "zmq",
    "pycurl",
    "sqlite3",
    "msgspec",
    "http.client",
    "common.config",
    "agent.server",
    "agent.supervision",
    "common.internal",
)
# Costly at start and not needed by a plain command (tomllib, for --config, does import typing).
HEAVY = ("concurrent.futures", "dataclasses", "typing", "tomllib")
# What a plain line (agent/client/ctl.py's quick_args) is read and answered without: argparse and its
# gettext, the json package, and `re` under all three.
SLOW_PATH = ("argparse", "gettext", "json", "re")


def loaded_after(
    code: str, *argv: str, watched: tuple[str, ...] = SERVER_SIDE + HEAVY, flags: tuple[str, ...] = ()
) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run CODE in a fresh interpreter (Python's FLAGS, argv ARGV); which of WATCHED (or their submodules) it
    had loaded when it exited, even by SystemExit."""
    probe = (
        "import atexit, sys\n"
        "def _report():\n"
        f"    found = sorted(m for m in sys.modules if any(m == w or m.startswith(w + '.') for w in {watched!r}))\n"
        "    sys.stderr.write('\\nLOADED ' + ' '.join(found) + '\\n')\n"
        "atexit.register(_report)\n" + code
    )
    env = {k: v for k, v in os.environ.items() if k != "EVENTSINK_SOCKET"}
    done = subprocess.run(
        [sys.executable, *flags, "-c", probe, *argv], capture_output=True, text=True, timeout=30, cwd=REPO, env=env
    )
    line = next(x for x in done.stderr.splitlines() if x.startswith("LOADED"))
    return done, line.split()[1:]


CTL = "import sys\nfrom agent.client.ctl import main\nsys.exit(main())\n"  # what the eventsinkctl script runs
# What the installed launcher runs (packaging/deb_launcher.py), with this tree as its site-packages: the dev
# venv's own start (its editable install's finder) imports `re` before any of eventsinkctl.
LAUNCHER_FLAGS = ("-I", "-S")
LAUNCHED = f"import sys\nsys.path.append({REPO!r})\n" + CTL


def test_importing_the_client_loads_nothing_of_the_server():
    _, found = loaded_after("import agent.client.ctl\nagent.client.ctl.build_parser()\n")
    assert found == []


def test_help_loads_nothing_of_the_server():
    done, found = loaded_after(CTL, "--help")
    assert done.returncode == 0 and "usage: eventsinkctl" in done.stdout
    assert found == []


def test_a_real_status_loads_nothing_of_the_server(server):
    done, found = loaded_after(CTL, "--socket", server.path, "status", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == STATUS
    assert found == []


@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_a_plain_status_is_read_and_answered_without_argparse_json_or_re(server, json_flag):
    done, found = loaded_after(
        LAUNCHED, "--socket", server.path, "status", *json_flag, watched=SLOW_PATH, flags=LAUNCHER_FLAGS
    )
    assert done.returncode == 0, done.stderr
    assert ("SINK" in done.stdout) if not json_flag else (json.loads(done.stdout) == STATUS)
    assert found == []


@pytest.mark.parametrize(
    "argv",
    [
        [c.name, *(["x"] * len(c.fields)), *(["--since", "2h"] if c.name == "replay" else [])]
        for c in COMMANDS
        if c.in_ctl
    ],
)
def test_no_command_loads_the_server_even_against_no_agent(argv, tmpdir_short):
    done, found = loaded_after(CTL, "--socket", os.path.join(tmpdir_short, "none.sock"), *argv)
    assert done.returncode == 3, done.stderr  # agent not running: every command got as far as connecting
    assert found == []


def test_config_option_loads_nothing_of_the_server(tmpdir_short):
    cfg = os.path.join(tmpdir_short, "agent.toml")
    with open(cfg, "w") as fh:
        fh.write(f'[agent]\nruntime_dir = "{tmpdir_short}/run"\n')
    done, found = loaded_after(CTL, "--config", cfg, "alarms")
    assert done.returncode == 3 and f"{tmpdir_short}/run/control.sock" in done.stderr
    assert [m for m in found if m.split(".")[0] not in ("tomllib", "typing")] == []
