"""The console password's hash: salted, slow, verifiable, never the password."""

import os
import stat

import pytest

from common import passwords


def test_a_hash_verifies_its_password_and_no_other():
    line = passwords.hash_password("correct horse")
    assert passwords.verify_password("correct horse", line)
    assert not passwords.verify_password("correct horsE", line)
    assert not passwords.verify_password("", line)


def test_two_hashes_of_one_password_differ_by_their_salt_and_hold_no_password():
    a, b = passwords.hash_password("correct horse"), passwords.hash_password("correct horse")
    assert a != b and "correct" not in a
    assert a.startswith("scrypt$16384$8$1$")


@pytest.mark.parametrize(
    "line", ["", "hunter2", "scrypt$3$8$1$AAAA$AAAA", "md5$16384$8$1$AAAA$AAAA", "scrypt$16384$8$1$!!!$AAAA"]
)
def test_what_is_not_a_hash_is_refused(line):
    with pytest.raises(passwords.BadHashFile):
        passwords.parse_hash(line)


def test_the_file_is_written_mode_0600(tmp_path):
    path = str(tmp_path / "p")
    passwords.write_hash_file(path, passwords.hash_password("correct horse"))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert passwords.verify_password("correct horse", passwords.read_hash_file(path))
