"""Log redaction: configured secrets never reach a log line."""

import io
import logging

import pytest

from common import config as cfg
from common import config_types, logs


@pytest.fixture(autouse=True)
def restore_root_logger():
    root = logging.getLogger()
    saved, level = list(root.handlers), root.level
    yield
    root.handlers[:] = saved
    root.setLevel(level)


def capture(label, secrets):
    logs.configure(label, secrets)
    stream = io.StringIO()
    logging.getLogger().handlers[0].stream = stream
    return stream


def config_with_password_file(pw, more: str = "") -> config_types.Config:
    """One sink with a URL password, its Basic password in the file PW, and MORE keys."""
    return cfg.parse(f"""
[node]
address = "10.0.0.1"
location = "Oslo"
[[sink]]
name = "a"
url = "http://user:url-pass-456@127.0.0.1:1/x"
locations = ["Oslo"]
password_file = "{pw}"
{more}
""").config


def test_secrets_from_config_and_password_files_are_masked(tmp_path):
    pw = tmp_path / "pw"
    pw.write_text("file-pass-123\n")
    config = config_with_password_file(pw, 'secret = "whsec_c2VjcmV0LWtleS03ODk="')
    stream = capture("t", logs.config_secrets(config))
    logging.getLogger("support.events").warning(
        "a=%s b=%s c=%s d=%s", "file-pass-123", "url-pass-456", "whsec_c2VjcmV0LWtleS03ODk=", "c2VjcmV0LWtleS03ODk="
    )
    out = stream.getvalue()
    assert "file-pass-123" not in out and "url-pass-456" not in out and "c2VjcmV0LWtleS03ODk" not in out
    assert out.count("***") == 4


def test_a_password_file_that_is_not_utf8_does_not_break_masking(tmp_path):
    """The file is read as the worker reads it (common.http_options.read_password_file); one it
    cannot read leaves the other secrets masked instead of raising."""
    pw = tmp_path / "pw"
    pw.write_bytes(b"\xff\xfe not text\n")
    assert logs.config_secrets(config_with_password_file(pw)) == ["url-pass-456"]


def test_add_secrets_extends_the_running_filter_and_keeps_the_old_ones():
    stream = capture("t", ["old-secret"])
    logs.add_secrets(["new-secret"])
    logging.getLogger("x").error("old-secret new-secret")
    assert stream.getvalue().rstrip().endswith("*** ***")


def test_rate_limited_logs_the_first_then_one_per_interval_with_the_count_suppressed():
    from common.logs import RateLimited, suppressed_note

    rate = RateLimited(every=10.0, clock=lambda: 0.0)
    assert rate.allow("a") == 0  # the first of a kind: at once
    assert rate.allow("a", n=3) is None and rate.allow("b") == 0  # kinds are apart
    assert rate.allow("a", now=9.9) is None
    assert rate.allow("a", now=10.0) == 4  # the interval is over: how many stayed quiet
    rate.forget()
    assert rate.allow("a", now=10.1) == 0
    assert suppressed_note(0) == "" and suppressed_note(4) == " (4 more like it since the last line)"
