"""Row 12: what `eventsinkctl status` costs an operator, against `curl --unix-socket` on the same socket.

A real agent (one sink, at the Python receiver) answers both; each run is a
fresh process, timed from spawn to exit (wall clock), the two tools
alternating so that the machine's load falls on both alike. The eventsinkctl
timed is the one operators run: an installed layout made as the .deb makes it
(`installed_ctl`: a venv of the package's Python, the project's packages in its
site-packages, bin/eventsinkctl the launcher of packaging/deb_launcher.py),
not the dev venv's console script, whose editable install costs every Python
start a finder; that one, and pip's console script in the installed layout
(what the package shipped before the launcher), are timed alongside as
information. One untimed run of each comes first (page cache, the agent's
first answer, and the byte-code cache, which the first run writes, as the
package's postinst byte-compiles the agent on a node). The medians count
(docs/control-api.md: `eventsinkctl` is a thin client of the control socket).
`python -m tests.bench.ctl_cost [N] [NAME=TREE ...]` runs the row alone,
timing the eventsinkctl of other source trees alongside, installed alike (a
before/after): NAME through the launcher, NAME_pip through pip's script.
"""

from __future__ import annotations

import configparser
import glob
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from tests.bench.receiver import FarReceiver
from tests.bench.runs import TIMEOUT_SLACK, AgentUnderTest
from tests.e2e.harness import REPO

RUNS = 20
# The environment of the Python runs: with byte-code caching, as an installed eventsinkctl has it.
CACHED = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
# The package's venv is made with this Python (packaging/build_deb.py's SYSTEM_PYTHON).
DEB_PYTHON = os.environ.get("EVENTSINK_DEB_PYTHON", "/usr/bin/python3")
# The console script pip writes for `eventsinkctl = agent.client.ctl:main` (setup.cfg).
PIP_SCRIPT = """#!{python}
import sys
from agent.client.ctl import main
if __name__ == '__main__':
    sys.argv[0] = sys.argv[0].removesuffix('.exe')
    sys.exit(main())
"""


def deb_launcher():
    """packaging/deb_launcher.py, loaded from its file: packaging/ is no package (and its name is PyPI's)."""
    spec = importlib.util.spec_from_file_location("deb_launcher", os.path.join(REPO, "packaging", "deb_launcher.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def project_packages(tree: str) -> list[str]:
    """The top-level packages TREE's setup.cfg installs (agent, common, ...), as the .deb build reads them."""
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(tree, "setup.cfg"))
    lines = cfg.get("options.packages.find", "include", fallback="").split()
    return sorted({line.split(".")[0] for line in lines if os.path.isdir(os.path.join(tree, line.split(".")[0]))})


def installed_ctl(tree: str, dest: str, python: str = DEB_PYTHON) -> dict[str, str]:
    """TREE's eventsinkctl installed under DEST as the .deb installs it: a venv of PYTHON (without pip), TREE's
    packages copied into its site-packages, the launcher as bin/eventsinkctl and, beside it, pip's console
    script as bin/eventsinkctl-pip. -> {"launcher": path, "pip": path, "python": the venv's python3}."""
    subprocess.run([python, "-m", "venv", "--without-pip", dest], check=True, capture_output=True, timeout=60)
    packages = glob.glob(os.path.join(dest, "lib", "python3*", "site-packages"))[0]
    for name in project_packages(tree):
        shutil.copytree(
            os.path.join(tree, name),
            os.path.join(packages, name),
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
    vpython = os.path.join(dest, "bin", "python3")
    launcher, pip = os.path.join(dest, "bin", "eventsinkctl"), os.path.join(dest, "bin", "eventsinkctl-pip")
    deb_launcher().write_ctl_launcher(launcher, vpython, packages)
    with open(pip, "w", encoding="utf-8") as fh:
        fh.write(PIP_SCRIPT.format(python=vpython))
    os.chmod(pip, 0o755)
    return {"launcher": launcher, "pip": pip, "python": vpython}


def dev_ctl() -> str | None:
    """The dev venv's console script (an editable install) beside this Python, if there is one."""
    script = os.path.join(os.path.dirname(sys.executable), "eventsinkctl")
    return script if os.access(script, os.X_OK) else None


def status_argv(script: str, socket_path: str) -> list[str]:
    return [script, "--socket", socket_path, "status"]


def curl_command(socket_path: str) -> list[str]:
    return [shutil.which("curl") or "curl", "-sS", "--fail", "--unix-socket", socket_path, "http://agent/v1/status"]


def time_once(cmd: list[str], env: dict[str, str] | None = None) -> float:
    """Seconds from spawn to exit of CMD (its output discarded), run in /; RuntimeError unless it exits 0."""
    t0 = time.perf_counter()
    done = subprocess.run(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        cwd="/",
        timeout=TIMEOUT_SLACK,
    )
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"{cmd[0]} exited {done.returncode}: {done.stderr.decode(errors='replace')[-500:]}")
    return seconds


def alternate(commands: dict[str, tuple[list[str], dict[str, str] | None]], n: int) -> dict[str, list[float]]:
    """N timed runs of each command, taken in turn (after one untimed run of each)."""
    for cmd, env in commands.values():
        time_once(cmd, env)
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(n):
        for name, (cmd, env) in commands.items():
            times[name].append(time_once(cmd, env))
    return times


def summary(times: list[float]) -> dict:
    return {
        "median_ms": statistics.median(times) * 1000,
        "min_ms": min(times) * 1000,
        "max_ms": max(times) * 1000,
        "runs_ms": [t * 1000 for t in times],
    }


def row_commands(sock: str, where: str, others: dict[str, str]) -> dict[str, tuple[list[str], dict[str, str] | None]]:
    """The commands of the row, by name, with the installed layouts they need made under WHERE: ctl (the
    installed launcher), curl, python (the launcher's Python started alike: the floor of any client written
    in it), ctl_pip (pip's script, same layout), ctl_dev (the dev venv's script) and, per OTHERS, NAME and
    NAME_pip (another tree installed alike)."""
    installed = installed_ctl(REPO, os.path.join(where, "ctl"))
    commands: dict[str, tuple[list[str], dict[str, str] | None]] = {
        "ctl": (status_argv(installed["launcher"], sock), CACHED),
        "curl": (curl_command(sock), None),
        "python": ([installed["python"], "-IS", "-c", "pass"], CACHED),
        "ctl_pip": (status_argv(installed["pip"], sock), CACHED),
    }
    if (dev := dev_ctl()) is not None:
        commands["ctl_dev"] = (status_argv(dev, sock), CACHED)
    for name, tree in others.items():
        other = installed_ctl(tree, os.path.join(where, f"other-{len(commands)}"))
        commands[name] = (status_argv(other["launcher"], sock), CACHED)
        commands[f"{name}_pip"] = (status_argv(other["pip"], sock), CACHED)
    return commands


def ctl_status(n: int = RUNS, others: dict[str, str] | None = None) -> dict:
    """Row 12: N runs of each of `row_commands` (eventsinkctl status as installed, curl --unix-socket, ...),
    alternating, against one real agent; "ratio" is the installed eventsinkctl's median over curl's.

    OTHERS: name -> a source tree whose eventsinkctl is timed too, in the same turns (e.g. the code before a change)."""
    with (
        tempfile.TemporaryDirectory(prefix="ctl-cost-") as where,
        FarReceiver(0.0) as receiver,
        AgentUnderTest(receiver.url + "/ctl") as a,
    ):
        times = alternate(row_commands(a.agent.control_socket, where, others or {}), n)
    out = {name: summary(t) for name, t in times.items()}
    out["runs"] = n
    out["ratio"] = out["ctl"]["median_ms"] / out["curl"]["median_ms"] if out["curl"]["median_ms"] else 0.0
    return out


def main(argv: list[str]) -> int:
    n = int(argv[0]) if argv else RUNS
    others = dict(arg.split("=", 1) for arg in argv[1:])
    r = ctl_status(n, others)
    curl = r["curl"]["median_ms"]
    for name in [k for k, v in r.items() if isinstance(v, dict)]:
        s = r[name]
        print(
            f"{name:<14} median {s['median_ms']:7.1f} ms = {s['median_ms'] / curl:4.2f}x curl  "
            f"(min {s['min_ms']:.1f}, max {s['max_ms']:.1f}; {n} runs)"
        )
    print(f"eventsinkctl / curl: {r['ratio']:.2f}x (goal <= 3)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
