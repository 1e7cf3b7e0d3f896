"""The launcher of `eventsinkctl` in the package's venv (bin/eventsinkctl, which /usr/bin/eventsinkctl links
to), written at build time by packaging/build_deb.py and, the same way, by the bench's row 12
(tests/bench/ctl_cost.py), so that the bench times what operators run.

An operator runs eventsinkctl by hand and scripts run it in loops, and Python's own start is most of its
cost: the pip-generated console script starts the venv's Python with `site`, which reads the venv's .pth
files and looks for a user site-packages. The launcher starts Python isolated and without site (`-IS`):
no PYTHON* variable, no ~/.local, no current or script directory on sys.path (safer for a tool root runs),
and puts only the venv's site-packages on sys.path itself, after the standard library as site would.
The project and its dependencies are installed from wheels, so nothing in site-packages needs a .pth file.
Standard library only: build_deb.py runs under any Python 3.11+.
"""

from __future__ import annotations

import os

# Linux passes everything after the interpreter in a shebang as one argument: the two flags are one word.
LAUNCHER = """#!{python} -IS
# eventsinkctl, written by packaging/build_deb.py (packaging/deb_launcher.py says why it looks so).
import sys
sys.path.append({site_packages!r})
from agent.client.ctl import main
sys.exit(main())
"""


def site_packages(venv: str, xy: str) -> str:
    """The site-packages of the venv at VENV (its final path) made with Python X.Y."""
    return os.path.join(venv, "lib", f"python{xy}", "site-packages")


def write_ctl_launcher(path: str, python: str, packages: str) -> None:
    """Writes the eventsinkctl launcher to PATH (mode 0755): PYTHON isolated, without site, with PACKAGES
    (a site-packages directory, the final path on the node) its only directory besides the standard library."""
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(LAUNCHER.format(python=python, site_packages=packages))
    os.chmod(path, 0o755)
