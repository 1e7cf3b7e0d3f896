"""eventsinkctl's launcher (packaging/deb_launcher.py) in an installed layout made as the .deb makes it
(tests/bench/ctl_cost.py's `installed_ctl`: a venv of the package's Python, the project copied into its
site-packages): it runs through a symlink as /usr/bin/eventsinkctl does, answers --help and a real status,
and takes nothing from the caller's PYTHONPATH or working directory (it starts Python isolated)."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.agent.control_fakes import STATUS
from tests.bench.ctl_cost import REPO, installed_ctl


@pytest.fixture
def launcher(tmp_path) -> str:
    """The launcher, reached through a symlink in another directory (as /usr/bin/eventsinkctl reaches it)."""
    installed = installed_ctl(REPO, str(tmp_path / "venv"))
    link = tmp_path / "usr-bin" / "eventsinkctl"
    link.parent.mkdir()
    link.symlink_to(installed["launcher"])
    return str(link)


def poisoned_dir(root) -> str:
    """A directory whose `agent` package fails on import: on sys.path it would break eventsinkctl."""
    (root / "agent").mkdir(parents=True)
    (root / "agent" / "__init__.py").write_text("raise SystemExit('the poisoned agent package was imported')\n")
    return str(root)


def run(argv: list[str], cwd: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, cwd=cwd, env=env, stdin=subprocess.DEVNULL)


def test_the_launcher_starts_python_isolated_without_site(launcher):
    with open(os.path.realpath(launcher), encoding="utf-8") as fh:
        shebang = fh.readline().split()
    assert shebang[0].endswith("/bin/python3") and shebang[1:] == ["-IS"]


def test_help_through_the_symlink_ignores_pythonpath_and_the_working_directory(launcher, tmp_path):
    poison = poisoned_dir(tmp_path / "poison")
    env = {**os.environ, "PYTHONPATH": poison, "PYTHONSTARTUP": os.path.join(poison, "agent", "__init__.py")}
    done = run([launcher, "--help"], poison, env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: eventsinkctl") and "poisoned" not in done.stderr


def test_a_real_status_through_the_launcher(launcher, server, tmp_path):
    env = {**os.environ, "PYTHONPATH": poisoned_dir(tmp_path / "poison")}
    done = run([launcher, "--socket", server.path, "status", "--json"], "/", env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == STATUS
    done = run([launcher, "--socket", server.path, "status"], "/", env)
    assert done.returncode == 0 and "SINK" in done.stdout.splitlines()[-len(STATUS["sinks"]) - 1], done.stdout
