"""Shared fixtures of the bus tests: a short directory under /tmp (`root`, its Unix socket
paths stay short), a tiny tmpfs."""

from __future__ import annotations

import os
import subprocess
import tempfile

import pytest

from tests.helpers import short_tmpdir


@pytest.fixture
def root():
    with short_tmpdir() as d:
        yield d


@pytest.fixture
def tiny_fs():
    """A 1 MiB tmpfs to fill up for real (needs root and mount rights; skipped elsewhere)."""
    d = tempfile.mkdtemp(prefix="esa-fs-", dir="/tmp")
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", d], check=True, capture_output=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        os.rmdir(d)
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield d
    if subprocess.run(["umount", d], capture_output=True, timeout=10).returncode != 0:
        subprocess.run(["umount", "-l", d], capture_output=True, timeout=10)
    os.rmdir(d)
