"""The [console] section: defaults, and every rule `check` applies to it (docs/config.md, docs/console.md)."""

import os
import subprocess
import sys

import pytest

from common import config as cfg
from common import passwords
from tests.tls_files import make_pki

BASE = """
[node]
address = "10.44.99.2"
location = "Oslo"

[[sink]]
name = "cdr"
url = "http://127.0.0.1:9/x"
locations = ["Oslo"]
"""


def console(tmp_path, **keys) -> str:
    lines = "\n".join(f"{k} = {v!r}" if isinstance(v, str) else f"{k} = {v}" for k, v in keys.items())
    return BASE + "\n[console]\n" + lines.replace("'", '"') + "\n"


@pytest.fixture
def hash_file(tmp_path):
    path = str(tmp_path / "console.passwd")
    passwords.write_hash_file(path, passwords.hash_password("correct horse"))
    return path


def problems(text):
    return [f"{p.key}: {p.message}" for p in cfg.parse(text).problems]


def test_console_is_off_by_default_and_its_defaults_are_the_documented_ones():
    c = cfg.parse(BASE).config.console
    assert (c.listen, c.password_file, c.tls_cert, c.tls_key, c.session_hours) == (
        "",
        "/etc/eventsink-agent/console.passwd",
        "",
        "",
        8,
    )


def test_loopback_listen_with_a_hash_file_is_valid(tmp_path, hash_file):
    for listen in ("127.0.0.1:9714", "[::1]:9714", "localhost:9714"):
        r = cfg.parse(console(tmp_path, listen=listen, password_file=hash_file))
        assert r.problems == [], listen
        assert r.config.console.listen == listen


def test_non_loopback_listen_without_tls_is_refused_with_its_key_and_line(tmp_path, hash_file):
    r = cfg.parse(console(tmp_path, listen="0.0.0.0:9714", password_file=hash_file))
    [p] = r.problems
    assert p.key == "console.listen" and p.line == 12
    assert "not a loopback address" in p.message and "tls_cert" in p.message


def test_non_loopback_listen_with_tls_is_valid(tmp_path, hash_file):
    pki = make_pki(str(tmp_path))
    text = console(
        tmp_path, listen="10.44.99.2:9714", password_file=hash_file, tls_cert=pki.server_cert, tls_key=pki.server_key
    )
    assert problems(text) == []


def test_a_tls_key_other_users_can_read_is_refused_without_showing_its_path(tmp_path, hash_file):
    pki = make_pki(str(tmp_path))
    os.chmod(pki.server_key, 0o644)
    found = problems(
        console(
            tmp_path, listen="127.0.0.1:9714", password_file=hash_file, tls_cert=pki.server_cert, tls_key=pki.server_key
        )
    )
    assert found == ["console.tls_key: the key file is readable by other users (chmod o-rwx)"]


def test_tls_cert_without_tls_key_is_refused(tmp_path, hash_file):
    pki = make_pki(str(tmp_path))
    found = problems(console(tmp_path, listen="127.0.0.1:9714", password_file=hash_file, tls_cert=pki.server_cert))
    assert found == ["console.tls_key: is required with tls_cert"]


def test_a_missing_password_file_is_refused(tmp_path):
    missing = str(tmp_path / "nope.passwd")
    [found] = problems(console(tmp_path, listen="127.0.0.1:9714", password_file=missing))
    assert found.startswith("console.password_file: cannot read") and "console-password" in found


def test_an_unreadable_password_file_is_refused(tmp_path, hash_file):
    if os.geteuid() == 0:
        # root reads any file: make it unreadable by making it a directory instead
        os.unlink(hash_file)
        os.mkdir(hash_file)
    else:
        os.chmod(hash_file, 0)
    [found] = problems(console(tmp_path, listen="127.0.0.1:9714", password_file=hash_file))
    assert found.startswith("console.password_file: cannot read")


def test_a_password_file_holding_a_plain_password_is_refused(tmp_path):
    plain = tmp_path / "plain"
    plain.write_text("hunter2hunter2\n")
    [found] = problems(console(tmp_path, listen="127.0.0.1:9714", password_file=str(plain)))
    assert "not a password hash" in found and "hunter2" not in found


def test_without_listen_the_password_file_is_not_needed(tmp_path):
    assert problems(console(tmp_path, password_file=str(tmp_path / "nope"))) == []


@pytest.mark.parametrize(
    "keys, key",
    [
        ({"listen": "nonsense"}, "console.listen"),
        ({"session_hours": 0}, "console.session_hours"),
        ({"colour": "blue"}, "console.colour"),
    ],
)
def test_bad_values_are_refused_with_their_key(tmp_path, hash_file, keys, key):
    found = cfg.parse(console(tmp_path, password_file=hash_file, **keys)).problems
    assert [p.key for p in found] == [key]


def test_check_command_rejects_a_non_loopback_listen_without_tls(tmp_path, hash_file):
    path = tmp_path / "agent.toml"
    path.write_text(console(tmp_path, listen="192.0.2.1:9714", password_file=hash_file))
    out = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "eventsink-agent"), "check", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert "console.listen" in out.stderr and "Traceback" not in out.stderr
