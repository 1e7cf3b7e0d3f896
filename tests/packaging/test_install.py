"""The package on a machine: dpkg -i, the user, the files, the commands, and the
life cycle upgrade (keeps a changed conffile) / remove (keeps config and state)
/ purge (removes them and the user). Needs root."""

from __future__ import annotations

import grp
import os
import pwd
import stat
import subprocess

from tests.packaging.conftest import PACKAGE, TEST_MARKER, dpkg, install, package_status, sh

CONF = "/etc/eventsink-agent/agent.toml"
STATE = "/var/lib/eventsink-agent"
VENV = "/opt/eventsink-agent"
UNIT_WANTS = "/etc/systemd/system/multi-user.target.wants/eventsink-agent.service"


def clean_env() -> dict[str, str]:
    """No PYTHONPATH/virtualenv from the test run: the installed commands must stand alone."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = "/usr/sbin:/usr/bin:/sbin:/bin"
    return env


def run_installed(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        list(args), capture_output=True, text=True, timeout=60, env=clean_env(), cwd="/", stdin=subprocess.DEVNULL
    )


def test_postinst_creates_the_system_user_and_group(installed):
    user = pwd.getpwnam("eventsink-agent")
    group = grp.getgrnam("eventsink-agent")
    assert user.pw_gid == group.gr_gid
    assert user.pw_dir == STATE
    assert user.pw_shell == "/usr/sbin/nologin"
    assert user.pw_uid < 1000, "a system user"


def test_files_are_in_place_with_the_right_owners_and_modes(installed):
    gid = grp.getgrnam("eventsink-agent").gr_gid
    uid = pwd.getpwnam("eventsink-agent").pw_uid
    st = os.stat(CONF)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, gid, 0o640)
    st = os.stat(STATE)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (uid, gid, 0o750)
    for path in ("/usr/bin/eventsink-agent", "/usr/bin/eventsinkctl"):
        assert os.access(path, os.X_OK), path
    for path in (
        "/lib/systemd/system/eventsink-agent.service",
        "/usr/share/doc/eventsink-agent/copyright",
        "/usr/share/doc/eventsink-agent/changelog.Debian.gz",
        "/usr/share/man/man1/eventsink-agent.1.gz",
    ):
        assert os.path.isfile(path), path
    # enabled the debhelper way (a symlink), whether or not systemd runs here
    assert os.path.islink(UNIT_WANTS)
    # dpkg's own record of the files matches the disk
    proc = sh(["dpkg", "--verify", PACKAGE], check=False)
    assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout + proc.stderr


def test_the_installed_commands_run_from_their_own_venv(installed):
    for cmd in ("/usr/bin/eventsink-agent", "/usr/bin/eventsinkctl"):
        proc = run_installed(cmd, "--help")
        assert proc.returncode == 0 and "usage" in proc.stdout.lower(), proc.stdout + proc.stderr
    proc = run_installed(
        f"{VENV}/bin/python3", "-c", "import agent, zmq, sys; print(agent.__file__); print(sys.prefix)"
    )
    assert proc.returncode == 0, proc.stderr
    agent_file, prefix = proc.stdout.split()
    assert agent_file.startswith(f"{VENV}/lib/") and prefix == VENV
    # postinst byte-compiled the venv (nothing writes there at run time: ProtectSystem=strict)
    pycache = [d for d, dirs, _ in os.walk(f"{VENV}/lib") if d.endswith("/agent/__pycache__")]
    assert pycache and os.listdir(pycache[0])


def test_check_accepts_the_installed_config(installed):
    proc = run_installed("/usr/bin/eventsink-agent", "check", "--config", CONF)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_check_of_a_missing_file_fails_in_one_sentence_without_a_traceback(installed):
    proc = run_installed("/usr/bin/eventsink-agent", "check", "--config", "/nonexistent/agent.toml")
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr


def test_upgrade_keeps_a_changed_conffile_remove_keeps_config_and_state_purge_removes_them(installed):
    deb = installed
    with open(CONF, "a", encoding="utf-8") as fh:
        fh.write("# changed by the operator\n")
    state_file = os.path.join(STATE, "journal.sqlite3")
    with open(state_file, "wb") as fh:
        fh.write(b"backlog")
    try:
        # upgrade (the same version again): dpkg must not ask, nor replace the changed conffile
        dpkg("--install", deb)
        with open(CONF, encoding="utf-8") as fh:
            assert fh.read().endswith("# changed by the operator\n")
        assert stat.S_IMODE(os.stat(CONF).st_mode) == 0o640
        assert not os.path.exists(CONF + ".dpkg-dist") and not os.path.exists(CONF + ".dpkg-new")

        dpkg("--remove", PACKAGE)
        assert package_status() == "config-files"
        assert not os.path.exists("/usr/bin/eventsink-agent") and not os.path.exists(VENV)
        with open(CONF, encoding="utf-8") as fh:
            assert "# changed by the operator" in fh.read()
        with open(state_file, "rb") as fh:
            assert fh.read() == b"backlog"
        pwd.getpwnam("eventsink-agent")  # the user stays while its files do

        dpkg("--purge", PACKAGE)
        assert package_status() == ""
        for path in ("/etc/eventsink-agent", STATE, VENV, UNIT_WANTS, "/etc/systemd/system/eventsink-agent.service"):
            assert not os.path.lexists(path), f"{path} survived the purge"
        for db, name in ((pwd.getpwnam, "user"), (grp.getgrnam, "group")):
            try:
                db("eventsink-agent")
            except KeyError:
                continue
            raise AssertionError(f"the {name} eventsink-agent survived the purge")
    finally:
        # back to "installed" for the tests that follow; the session fixture purges at the end
        if package_status() != "installed":
            install(deb)
        assert os.path.exists(TEST_MARKER)
