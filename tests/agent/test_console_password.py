"""`eventsink-agent console-password --file PATH`, run as operators run it."""

import os
import stat
import subprocess
import sys

from common import passwords

AGENT = os.path.join(os.path.dirname(sys.executable), "eventsink-agent")


def run(*args, stdin=""):
    return subprocess.run([AGENT, "console-password", *args], input=stdin, capture_output=True, text=True, timeout=60)


def test_reads_one_line_from_stdin_and_writes_its_hash_mode_0600(tmp_path):
    path = str(tmp_path / "console.passwd")
    out = run("--file", path, stdin="correct horse battery\n")
    assert out.returncode == 0, out.stderr
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    line = open(path).read()
    assert "correct horse" not in line and "correct horse" not in out.stderr + out.stdout
    assert passwords.verify_password("correct horse battery", line)


def test_a_short_password_is_refused_and_nothing_is_written(tmp_path):
    path = str(tmp_path / "console.passwd")
    out = run("--file", path, stdin="short\n")
    assert out.returncode == 1 and "at least 8" in out.stderr and "Traceback" not in out.stderr
    assert not os.path.exists(path)


def test_a_missing_directory_is_one_sentence(tmp_path):
    out = run("--file", str(tmp_path / "no" / "such" / "file"), stdin="correct horse battery\n")
    assert out.returncode == 1 and "no such directory" in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_file_is_required():
    out = run()
    assert out.returncode == 2 and "--file" in out.stderr
