"""eventsinkctl's quick ways (agent/client/ctl.py, agent/client/wire.py) read exactly what the slow ones
read: `quick_args` takes a line only when argparse would parse it to the same values, and `decode_json`
answers (or fails) as json.loads does."""

from __future__ import annotations

import json

import pytest

from agent.client import ctl
from agent.client.wire import decode_json


def argparse_reads(argv: list[str]) -> dict | int:
    """What main() gets from argparse for ARGV: its values (--socket and --config None when not given), or the
    exit code argparse ended with (usage errors, --help)."""
    args = ctl.parsed_args(argv)
    return args if isinstance(args, int) else vars(args)


@pytest.mark.parametrize(
    "argv",
    [
        ["status"],
        ["status", "--json"],
        ["--socket", "/s", "status"],
        ["--socket=/s", "status", "--json", "--json"],
        ["status", "--socket", "/s"],
        ["--socket", "/a", "status", "--socket", "/b"],
        ["--socket=/a=b", "status"],
        ["--config", "/c", "alarms", "--socket=/s"],
        ["--socket", "", "status"],
        ["--socket=", "status"],
        ["restart", "cdr"],
        ["restart", "cdr", "--json", "--socket", "/s"],
        ["--socket", "status", "restart", "status"],
        ["reload"],
    ],
)
def test_a_plain_line_is_read_as_argparse_reads_it(argv):
    quick = ctl.quick_args(argv)
    assert quick is not None, argv
    assert vars(quick) == argparse_reads(argv)


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--help"],
        ["--version"],
        ["status", "--help"],
        ["status", "-h"],
        ["status", "--js"],
        ["--sock", "/s", "status"],
        ["--json", "status"],
        ["status", "extra"],
        ["restart"],
        ["restart", "a", "b"],
        ["restart", "-x"],
        ["status", "--"],
        ["status", "--socket"],
        ["status", "--socket", "--json"],
        ["status", "--json=1"],
        ["restart", ""],
        ["bogus"],
        ["replay", "x", "--since", "2h"],
        ["attempts", "x"],
        ["redrive", "x", "a"],  # commands with options of their own
    ],
)
def test_anything_else_is_left_to_argparse(argv):
    assert ctl.quick_args(argv) is None


DOCUMENTS = [
    b'{"a": [1, 2.5, -3e2, true, false, null, "x\\u00e9\\ud83d\\ude00"]}',
    b"  [ ]\r\n",
    b'"\xc3\xa9"',
    b"0",
    b"-0.0",
    b"NaN",
    b"[Infinity, -Infinity]",
    b'{"a": 1, "a": 2}',
    b"12345678901234567890123",
    b'"\\ud800"',
    b'\xef\xbb\xbf{"bom": 1}',
    '{"wide": 1}'.encode("utf-16"),
    b"[1] [2]",
    b"",
    b"   ",
    b"{",
    b"[1,]",
    b"nul",
    b'"\xff"',
    b'"a\x01"',
    b"[" * 100_000,
]


@pytest.mark.parametrize("raw", DOCUMENTS)
def test_decode_json_answers_and_fails_as_json_loads(raw):
    try:
        expected: object = json.loads(raw)
    except Exception as exc:  # whichever error json.loads gives, decode_json gives too
        with pytest.raises(type(exc)):
            decode_json(raw)
        return
    got = decode_json(raw)
    assert json.dumps(got) == json.dumps(expected)  # NaN != NaN: compare as text
    assert type(got) is type(expected)
