"""Fixtures of the package tests: the .deb built once per session, and the
package installed on this machine (dpkg -i) and always purged at the end.

These tests change the machine (a system user, /etc, /var/lib, /opt): CI runs
them as root. Without root they fail with a clear message, they do not skip.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGING = os.path.join(REPO, "packaging")
BUILD_SCRIPT = os.path.join(PACKAGING, "build_deb.py")
PACKAGE = "eventsink-agent"
# Written by the tests into a directory that purge removes: a package found
# installed with this marker was left by an interrupted test run, not by an operator.
TEST_MARKER = "/var/lib/eventsink-agent/.installed-by-package-tests"
# Held while the package is installed by a test session: two sessions on one machine (two work
# trees, two CI jobs; xdist workers are kept together by their group) would purge each other's install.
MACHINE_LOCK = "/var/lock/eventsink-agent-package-tests.lock"
MACHINE_LOCK_WAIT = 900.0  # s: another session's package tests take a few minutes


def need_root(what: str) -> None:
    if os.geteuid() != 0:
        pytest.fail(
            f"{what} needs root (it installs and purges the .deb on this machine): run the tests as root, as CI does"
        )


def need_tool(path: str, package: str) -> str:
    found = shutil.which(path)
    if not found:
        pytest.fail(f"{path} not found: install the Debian package {package} (`make apt` does it as root)")
    return found


def sh(cmd: list[str], *, check: bool = True, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    """Run CMD, capture its output, and fail the test with that output when it fails."""
    kw.setdefault("stdin", subprocess.DEVNULL)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def package_status() -> str:
    """dpkg's status of the package: 'installed', 'config-files', or '' when not on this machine."""
    proc = subprocess.run(
        ["dpkg-query", "-W", "-f=${db:Status-Status}", PACKAGE],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    status = proc.stdout.strip() if proc.returncode == 0 else ""
    return "" if status == "not-installed" else status  # known to dpkg (a purge just ran), nothing on disk


def dpkg(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """dpkg without its fsyncs (--force-unsafe-io: a crash mid-test may lose the
    package's files, nothing else) and without a terminal to prompt on."""
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    return sh(["dpkg", "--force-unsafe-io", *args], check=check, env=env, timeout=180)


def purge() -> None:
    if package_status():
        dpkg("--purge", PACKAGE)


def install(deb: str) -> None:
    dpkg("--install", deb)
    with open(TEST_MARKER, "w", encoding="utf-8") as fh:
        fh.write("installed by tests/packaging; purge freely\n")


@pytest.fixture(scope="session")
def deb_path(tmp_path_factory) -> str:
    """The .deb built from this work tree (once per session, into a temp dir)."""
    need_tool("dpkg-deb", "dpkg-dev")
    out = tmp_path_factory.mktemp("deb")
    proc = subprocess.run(
        [sys.executable, BUILD_SCRIPT, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        pytest.fail(f"packaging/build_deb.py failed ({proc.returncode}):\n{proc.stderr}")
    deb = proc.stdout.strip().splitlines()[-1]
    assert os.path.isfile(deb), f"build_deb.py printed {deb!r}, which is not a file"
    return deb


@contextlib.contextmanager
def machine_lock(path: str = MACHINE_LOCK, wait: float = MACHINE_LOCK_WAIT):
    """The package tests' turn on this machine: waits (bounded) while another session holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"another test session held {path} for {wait:.0f} s (its package tests)")
                time.sleep(0.5)  # polling a lock another session holds for minutes
        yield
    finally:
        os.close(fd)


@pytest.fixture(scope="session")
def installed(deb_path):
    """The package installed with dpkg -i; purged at the end of the session, even on failure."""
    need_root("installing the .deb")
    with machine_lock():
        yield from install_for_the_session(deb_path)


def install_for_the_session(deb_path: str):
    status = package_status()
    if status and not os.path.exists(TEST_MARKER):
        pytest.fail(
            f"{PACKAGE} is already on this machine (dpkg status {status!r}) and not from these tests; "
            f"refusing to purge it: run `dpkg -P {PACKAGE}` first if that is intended"
        )
    purge()  # leftovers of an interrupted test run (or config-files of a removed one)
    install(deb_path)
    try:
        yield deb_path
    finally:
        purge()
