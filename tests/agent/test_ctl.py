"""`eventsinkctl` as a real subprocess against a real control socket (fake supervisor)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading

import pytest

from agent.client import ctl
from agent.commands import CTL_UNITS
from agent.commands.registry import COMMANDS
from tests.agent.control_fakes import STATUS

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_ctl(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != ctl.SOCKET_ENV}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "agent.client.ctl", *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
        env=full_env,
    )


def assert_one_plain_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    assert "Traceback" not in text
    assert lines[0].startswith("eventsinkctl: ")
    return lines[0]


def test_status_table(server):
    out = run_ctl("--socket", server.path, "status")
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    header = next(line for line in out.stdout.splitlines() if line.startswith("SINK"))
    assert header.split() == [
        "SINK",
        "STATE",
        "PID",
        "BACKLOG",
        "IN-FLIGHT",
        "DELIVERED",
        "FAILURES",
        "BACKOFF",
        "ALARMS",
        "LAST",
        "RESTART",
    ]
    rows = {line.split()[0]: line for line in out.stdout.splitlines()[out.stdout.splitlines().index(header) + 1 :]}
    assert set(rows) == {"cdr", "siem-long-name"}
    assert rows["cdr"].split()[:7] == ["cdr", "running", "4242", "3", "1", "1234", "2"]
    assert "Eventsink Reached Maximum Backoff" in rows["siem-long-name"]


def test_status_json_is_the_raw_answer(server):
    out = run_ctl("status", "--json", "--socket", server.path)  # options after the subcommand work too
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == STATUS


def test_alarms_table_and_empty(server, supervisor):
    out = run_ctl("--socket", server.path, "alarms")
    assert out.returncode == 0
    assert out.stdout.splitlines()[0].split()[:2] == ["ALARM", "SINK"]
    assert "siem-long-name" in out.stdout
    supervisor.alarms = []
    out = run_ctl("--socket", server.path, "alarms")
    assert (out.returncode, out.stdout.strip()) == (0, "no active alarms")
    out = run_ctl("--socket", server.path, "alarms", "--json")
    assert json.loads(out.stdout) == []


def test_restart_known_and_unknown(server, supervisor):
    out = run_ctl("--socket", server.path, "restart", "cdr")
    assert out.returncode == 0 and "cdr" in out.stdout
    out = run_ctl("--socket", server.path, "restart", "nope")
    assert out.returncode == 1
    assert out.stdout == ""
    line = assert_one_plain_line(out.stderr)
    assert "nope" in line
    assert [p for c, p in supervisor.calls] == [{"sink": "cdr"}, {"sink": "nope"}]


def test_reload_ok_and_with_problems(server, supervisor):
    out = run_ctl("--socket", server.path, "reload")
    assert out.returncode == 0 and "reloaded" in out.stdout
    supervisor.reload_problems = ["agent.toml:7: sink[0] (cdr).url: must be an http:// or https:// URL"]
    out = run_ctl("--socket", server.path, "reload")
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert out.stderr.splitlines()[0] == "eventsinkctl: the config has problems; nothing changed"
    assert "sink[0] (cdr).url" in out.stderr


def test_agent_failure_is_exit_1(server, supervisor):
    supervisor.explode = True
    out = run_ctl("--socket", server.path, "status")
    assert out.returncode == 1
    assert_one_plain_line(out.stderr)


def test_agent_not_running_no_socket(tmpdir_short):
    path = os.path.join(tmpdir_short, "control.sock")
    out = run_ctl("--socket", path, "status")
    assert out.returncode == 3
    line = assert_one_plain_line(out.stderr)
    assert line == f"eventsinkctl: agent not running (no control socket at {path})"
    assert out.stdout == ""


def test_agent_not_running_stale_socket(tmpdir_short):
    path = os.path.join(tmpdir_short, "control.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(path)  # bound, never listening: like a crashed agent's leftover
    out = run_ctl("--socket", path, "alarms")
    assert out.returncode == 3
    assert "agent not running" in assert_one_plain_line(out.stderr)


def test_socket_from_env_and_from_config(server, tmpdir_short):
    out = run_ctl("status", "--json", env={ctl.SOCKET_ENV: server.path})
    assert out.returncode == 0 and json.loads(out.stdout) == STATUS
    cfg = os.path.join(tmpdir_short, "agent.toml")
    with open(cfg, "w") as fh:
        fh.write(
            f'[node]\naddress = "10.0.0.1"\nlocation = "Oslo"\n[agent]\ncontrol_socket = "{server.path}"\n'
            '[[sink]]\nname = "x"\nurl = "http://127.0.0.1:1/"\nlocations = ["Oslo"]\n'
            'password_file = "/nonexistent/unreadable-by-operators"\n'
        )
    # --config wins over the environment; only [agent] is read (password files need not be readable)
    out = run_ctl("--config", cfg, "status", "--json", env={ctl.SOCKET_ENV: "/nonexistent/sock"})
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == STATUS


def test_socket_from_config_runtime_dir(tmpdir_short):
    cfg = os.path.join(tmpdir_short, "agent.toml")
    with open(cfg, "w") as fh:
        fh.write(f'[agent]\nruntime_dir = "{tmpdir_short}/run"\n')
    out = run_ctl("--config", cfg, "status")
    assert out.returncode == 3
    assert f"{tmpdir_short}/run/control.sock" in assert_one_plain_line(out.stderr)


def test_bad_config_is_usage_error(tmpdir_short):
    missing = run_ctl("--config", os.path.join(tmpdir_short, "none.toml"), "status")
    assert missing.returncode == 2
    assert "cannot read" in assert_one_plain_line(missing.stderr)
    broken = os.path.join(tmpdir_short, "broken.toml")
    with open(broken, "w") as fh:
        fh.write("[agent\n")
    out = run_ctl("--config", broken, "status")
    assert out.returncode == 2
    assert "not valid TOML" in assert_one_plain_line(out.stderr)


def test_default_socket(monkeypatch):
    monkeypatch.delenv(ctl.SOCKET_ENV, raising=False)
    args = ctl.build_parser().parse_args(["status"])
    args.socket = getattr(args, "socket", None)
    args.config = getattr(args, "config", None)
    assert ctl.socket_path(args) == "/run/eventsink-agent/control.sock"


def test_usage_errors_exit_2():
    for argv in ([], ["bogus"], ["restart"], ["status", "--bogus"]):
        out = run_ctl(*argv)
        assert out.returncode == 2, argv
        assert "Traceback" not in out.stderr
        assert "usage:" in out.stderr


@pytest.mark.parametrize(
    "argv", [["--help"], ["status", "--help"], ["alarms", "--help"], ["restart", "--help"], ["reload", "--help"]]
)
def test_help_exits_0(argv):
    out = run_ctl(*argv)
    assert out.returncode == 0
    assert out.stdout.startswith("usage: eventsinkctl")


def test_console_script_installed():
    script = os.path.join(REPO, ".venv", "bin", "eventsinkctl")
    if not os.path.exists(script):
        pytest.skip("not installed with pip install -e .")
    out = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "status" in out.stdout


def test_sink_name_not_utf8_is_one_plain_line(server, supervisor):
    # A shell may hand over a name that is not UTF-8 (Python sees a surrogate escape).
    out = subprocess.run(
        [sys.executable, "-m", "agent.client.ctl", "--socket", server.path.encode(), "restart", b"cdr\xff"],
        capture_output=True,
        timeout=30,
        cwd=REPO,
        env={k: v for k, v in os.environ.items() if k != ctl.SOCKET_ENV},
    )
    stderr = out.stderr.decode("utf-8", "replace")
    assert "Traceback" not in stderr
    assert out.returncode == 1, stderr
    assert_one_plain_line(stderr)
    assert len(supervisor.calls) == 1  # it reached the agent, which refused it


# ---------------------------------------------------------------- the client's own HTTP/1.1 (ctl.exchange)


def exchange_with(answer: bytes, body: bytes | None = None) -> tuple[tuple[int, bytes] | Exception, bytes]:
    """ctl.exchange against a peer that sends ANSWER (then closes): its outcome and the request it sent."""
    ours, theirs = socket.socketpair()
    ours.settimeout(5)
    with ours, theirs:
        theirs.sendall(answer)
        theirs.shutdown(socket.SHUT_WR)
        try:
            outcome: tuple[int, bytes] | Exception = ctl.exchange(ours, "POST", "/v1/reload", body)
        except OSError as exc:
            outcome = exc
        ours.shutdown(socket.SHUT_WR)
        theirs.settimeout(5)
        sent = b""
        while chunk := theirs.recv(65536):
            sent += chunk
    return outcome, sent


def test_exchange_sends_one_request_and_reads_content_length():
    outcome, sent = exchange_with(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}trailing", b'{"a":1}')
    assert outcome == (200, b"{}")
    assert sent == (
        b"POST /v1/reload HTTP/1.1\r\nHost: agent\r\nAccept: application/json\r\nConnection: close\r\n"
        b'Content-Type: application/json\r\nContent-Length: 7\r\n\r\n{"a":1}'
    )


def test_exchange_skips_100_continue_and_reads_to_the_end_without_a_length():
    outcome, _ = exchange_with(b'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\n\r\n{"error": "x"}')
    assert outcome == (404, b'{"error": "x"}')


def test_exchange_reads_a_chunked_answer():
    outcome, _ = exchange_with(
        b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{"a\r\n5;ext=1\r\n": 1}\r\n0\r\n\r\n'
    )
    assert outcome == (200, b'{"a": 1}')


@pytest.mark.parametrize(
    "answer",
    [
        b"",
        b"HTTP/1.1 200 OK\r\nContent-Le",
        b"SSH-2.0-OpenSSH\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
)
def test_exchange_refuses_what_is_not_a_whole_answer(answer):
    outcome, _ = exchange_with(answer)
    assert isinstance(outcome, ConnectionError)


def test_client_reports_an_agent_that_closes_without_answering(tmpdir_short):
    path = os.path.join(tmpdir_short, "mute.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(path)
        listener.listen(1)
        mute = threading.Thread(target=lambda: listener.accept()[0].close())
        mute.start()
        with pytest.raises(ctl.AgentFailed, match="closed the connection without an answer"):
            ctl.ControlClient(path, timeout=5).request("GET", "/v1/status")
        mute.join()


# ---------------------------------------------------------------- the parser built for one subcommand


@pytest.mark.parametrize(
    "argv,name",
    [
        (["status"], "status"),
        (["--socket", "/s", "restart", "cdr"], "restart"),
        (["--socket=/s", "alarms"], "alarms"),
        (["--config", "/c", "--socket", "status", "replay", "x", "--since", "2h"], "replay"),
        (["--help"], None),
        (["--version"], None),
        (["--sock", "/s", "status"], None),
        (["bogus"], None),
        ([], None),
        (["--socket", "/s"], None),
        (["schema"], None),  # not an eventsinkctl subcommand
    ],
)
def test_requested_names_the_subcommand_only_when_it_is_plain(argv, name):
    assert ctl.requested(argv) == name


@pytest.mark.parametrize(
    "argv",
    [
        ["status"],
        ["--socket", "/s", "restart", "cdr", "--json"],
        ["--socket=/s", "replay", "x", "--since", "2h"],
        ["--config", "/c", "attempts", "x", "--limit", "5"],
        ["redrive", "x", "a", "b"],
        ["discard", "x", "y", "--socket", "/t"],
    ],
)
def test_the_one_subcommand_parser_parses_as_the_whole_one(argv):
    whole, one = ctl.build_parser().parse_args(argv), ctl.build_parser(ctl.requested(argv)).parse_args(argv)
    assert vars(whole) == vars(one)


def test_usage_errors_after_a_plain_subcommand_read_as_before(capsys):
    for argv in (["restart"], ["status", "--bogus"], ["replay", "x"], ["status", "--help"]):
        texts = []
        for parser in (ctl.build_parser(), ctl.build_parser(ctl.requested(argv))):
            with pytest.raises(SystemExit) as done:
                parser.parse_args(argv)
            texts.append((done.value.code, capsys.readouterr()))
        assert texts[0] == texts[1], argv


def test_each_subcommand_is_found_where_the_package_says_and_only_those():
    """agent.commands.CTL_UNITS (what a plain subcommand imports) names each command eventsinkctl offers."""
    offered = [c for c in COMMANDS if c.in_ctl]
    assert list(CTL_UNITS) == [c.name for c in offered]
    assert [ctl.described(c.name) for c in offered] == offered
