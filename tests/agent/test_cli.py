"""`eventsink-agent`: `check` as a real subprocess on real files; run/schema/demo/receive
wiring in-process with stand-in modules; `--help` everywhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types

import pytest

from agent import cli
from tests.helpers import short_tmpdir

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

VALID = """\
[node]
address = "10.44.99.2"
location = "Oslo"
role = "transcoding"

[tuning]
max_retry_backoff = 600

[[sink]]
name = "cdr"
url = "https://user:s3cr3t-pw@collector.example.com/pexip"
locations = ["Oslo", "London"]

[[sink]]
name = "siem"
url = "http://127.0.0.1:8080/events"
locations = ["London"]
"""


@pytest.fixture
def tmp():
    with short_tmpdir() as d:
        yield d


def write(tmp: str, text: str, name: str = "agent.toml") -> str:
    path = os.path.join(tmp, name)
    with open(path, "w") as fh:
        fh.write(text)
    return path


def run_agent(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True, timeout=30, cwd=REPO)


def test_check_valid_file(tmp):
    path = write(tmp, VALID)
    out = run_agent("check", "--config", path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"{path}: OK (2 sinks, 1 at this location)"
    # the sink not used here is a warning, not a failure
    assert "warning:" in out.stderr and "siem" in out.stderr
    assert "s3cr3t-pw" not in out.stdout + out.stderr


BAD_CASES = {
    "duplicate sink name": (VALID.replace('name = "siem"', 'name = "cdr"'), "name", "duplicate"),
    "version 3": (VALID.replace('name = "cdr"', 'name = "cdr"\nversion = 3'), "version", "1 or 2"),
    "non-http url": (VALID.replace("http://127.0.0.1:8080/events", "ftp://127.0.0.1/events"), "url", "http"),
    "unknown key": (VALID.replace('name = "cdr"', 'name = "cdr"\nretries = 5'), "retries", "unknown key"),
    "missing node.address": (VALID.replace('address = "10.44.99.2"\n', ""), "node.address", "required"),
    "negative tuning value": (
        VALID.replace("max_retry_backoff = 600", "connection_timeout = -1"),
        "tuning.connection_timeout",
        "negative",
    ),
    "unknown role": (VALID.replace('role = "transcoding"', 'role = "edge"'), "node.role", "transcoding"),
    "broken toml": (VALID.replace("[tuning]", "[tuning"), "toml", "not valid TOML"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_check_bad_file(tmp, case):
    text, key, words = BAD_CASES[case]
    path = write(tmp, text)
    out = run_agent("check", "--config", path)
    assert out.returncode == 1, out.stdout
    assert "Traceback" not in out.stdout + out.stderr
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert lines, "no problem printed"
    hit = [line for line in lines if key in line and words in line]
    assert hit, out.stderr
    assert hit[0].startswith(f"{path}:")  # PATH:LINE: KEY: message (line where known)
    assert "s3cr3t-pw" not in out.stderr


def test_check_problem_has_line_number(tmp):
    path = write(tmp, VALID.replace('role = "transcoding"', 'role = "edge"'))
    out = run_agent("check", "--config", path)
    assert f"{path}:4: node.role:" in out.stderr


def test_check_missing_file_is_one_line(tmp):
    path = os.path.join(tmp, "nope.toml")
    out = run_agent("check", "--config", path)
    assert out.returncode == 1
    assert len(out.stderr.strip().splitlines()) == 1
    assert "cannot read" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["run", "--help"],
        ["check", "--help"],
        ["schema", "--help"],
        ["demo", "--help"],
        ["receive", "--help"],
    ],
)
def test_help_exits_0(argv, capsys):
    assert cli.main(argv) == 0
    assert capsys.readouterr().out.startswith("usage: eventsink-agent")


def test_console_scripts_help():
    for name in ("eventsink-agent", "eventsinkctl"):
        script = os.path.join(REPO, ".venv", "bin", name)
        if not os.path.exists(script):
            pytest.skip("not installed with pip install -e .")
        out = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0 and out.stdout.startswith(f"usage: {name}")


def test_usage_errors_are_exit_2_without_traceback():
    for argv in (
        [],
        ["bogus"],
        ["schema", "--format", "yaml"],
        ["receive", "--listen", "nohostport"],
        ["demo", "--duration", "-1"],
    ):
        out = run_agent(*argv)
        assert out.returncode == 2, argv
        assert "Traceback" not in out.stderr and "usage:" in out.stderr


# ------------------------------------------------------------------ run, schema, demo, receive wiring


def test_run_bad_config_exits_1_with_each_problem(tmp, capsys):
    path = write(tmp, VALID.replace('role = "transcoding"', 'role = "edge"').replace('name = "siem"', 'name = "cdr"'))
    assert cli.main(["run", "--config", path]) == 1
    err = capsys.readouterr().err
    assert "node.role" in err and "duplicate" in err
    assert "Traceback" not in err


def test_run_starts_supervisor_with_path_and_config(tmp, monkeypatch):
    path = write(tmp, VALID)
    seen = {}

    class Supervisor:
        def __init__(self, config_path, config):
            seen["args"] = (config_path, config)

        def run(self):
            return 0

    monkeypatch.setitem(sys.modules, "agent.supervision.supervisor", types.SimpleNamespace(Supervisor=Supervisor))
    monkeypatch.setattr(
        "common.logs.configure", lambda label, secrets=(): seen.setdefault("logs", (label, list(secrets)))
    )
    assert cli.main(["run", "--config", path]) == 0
    config_path, config = seen["args"]
    assert config_path == path and [s.name for s in config.sink] == ["cdr", "siem"]
    assert seen["logs"] == ("supervisor", ["s3cr3t-pw"])


def test_run_control_socket_in_use_is_one_line(tmp, monkeypatch, capsys):
    from agent.server.control import ControlSocketError

    class Supervisor:
        def __init__(self, *a):
            pass

        def run(self):
            raise ControlSocketError("another agent is already answering on the control socket /run/x.sock")

    monkeypatch.setitem(sys.modules, "agent.supervision.supervisor", types.SimpleNamespace(Supervisor=Supervisor))
    monkeypatch.setattr("common.logs.configure", lambda *a, **k: None)
    assert cli.main(["run", "--config", write(tmp, VALID)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["eventsink-agent: another agent is already answering on the control socket /run/x.sock"]


def test_schema_prints_rendered_document(monkeypatch, capsys):
    asked = []
    render = lambda fmt: asked.append(fmt) or json.dumps({"format": fmt})  # noqa: E731 - a one-line stand-in renderer that records its format
    monkeypatch.setitem(sys.modules, "bus.schema", types.SimpleNamespace(render=render))
    assert cli.main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out) == {"format": "openapi"}
    assert cli.main(["schema", "--format", "swagger"]) == 0
    assert json.loads(capsys.readouterr().out) == {"format": "swagger"}
    assert asked == ["openapi", "swagger"]


def test_demo_and_receive_get_the_namespace(monkeypatch):
    got: dict[str, list] = {"demo": [], "rx": []}

    def demo_main(args):
        got["demo"].append(args)
        return 0

    def receiver_main(args):
        got["rx"].append(args)
        return 5

    monkeypatch.setitem(sys.modules, "tools.demo", types.SimpleNamespace(main=demo_main))
    monkeypatch.setitem(sys.modules, "tools.receive_command", types.SimpleNamespace(main=receiver_main))
    assert cli.main(["demo", "--duration", "2.5"]) == 0
    assert cli.main(["demo"]) == 0
    assert [a.duration for a in got["demo"]] == [2.5, None]
    assert (
        cli.main(
            ["receive", "--listen", "127.0.0.1:9999", "--username", "u", "--password", "p", "--secret", "whsec_eA=="]
        )
        == 5
    )
    assert cli.main(["receive"]) == 5
    first, default = got["rx"]
    assert (first.listen, first.username, first.password, first.secret) == ("127.0.0.1:9999", "u", "p", "whsec_eA==")
    assert (default.listen, default.username, default.password, default.secret) == ("127.0.0.1:8080", "", "", "")
    argv = [
        "receive",
        "--password-file",
        "/p",
        "--secret-file",
        "/s",
        "--bearer-token-file",
        "/t",
        "--tls-cert",
        "/c",
        "--tls-key",
        "/k",
        "--client-ca",
        "/ca",
    ]
    assert cli.main(argv) == 5
    files = got["rx"][-1]
    assert (files.password_file, files.secret_file, files.bearer_token_file) == ("/p", "/s", "/t")
    assert (files.tls_cert, files.tls_key, files.client_ca) == ("/c", "/k", "/ca")
