"""`eventsink-agent import-pexip` (docs/import-pexip.md) on realistic saved answers of a Management Node's
configuration API (tests/agent/fixtures/pexip): the mapping, the warnings, the files it writes,
and one plain sentence for every file that is not such an answer."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import tomllib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent import cli
from agent.pexip.importer import sink_name
from agent.pexip.output import toml_value
from common import config as cfg
from common import config_types

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "pexip")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENTRY_POINT = os.path.join(REPO, ".venv", "bin", "eventsink-agent")
PASSWORD = 'Tr0ub4dor&3 "cdr"'  # sink 1's password in event_sink.json


def fixture(name: str) -> str:
    return os.path.join(FIXTURES, name)


def run_import(capsys, *extra: str, sinks: str = "event_sink.json", location: str = "Oslo") -> tuple[int, str, str]:
    argv = [
        "import-pexip",
        "--event-sinks",
        fixture(sinks) if "/" not in sinks else sinks,
        "--address",
        "10.44.99.2",
        "--location",
        location,
        *extra,
    ]
    rc = cli.main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def full_import(capsys, tmp_path, *extra: str) -> tuple[str, str]:
    out_path = str(tmp_path / "agent.toml")
    rc, out, err = run_import(
        capsys,
        "--locations",
        fixture("system_location.json"),
        "--global",
        fixture("global.json"),
        "-o",
        out_path,
        *extra,
    )
    assert rc == 0, err
    assert out == ""
    return out_path, err


def check_passes(path: str) -> None:
    result = cfg.load(path)
    assert result.problems == [], result.problems
    assert cli.main(["check", "--config", path]) == 0


def test_every_mapped_field_lands_where_section_10_says(capsys, tmp_path):
    path, _ = full_import(capsys, tmp_path, "--role", "proxying")
    config = cfg.load(path).config
    assert (config.node.address, config.node.location, config.node.role) == ("10.44.99.2", "Oslo", "proxying")
    t = config.tuning  # global.json: es_* fields, each unlike the agent's default
    assert (t.connection_timeout, t.initial_retry_backoff, t.max_retry_backoff) == (5, 2, 900)
    assert (t.max_background_posts, t.media_streams_wait, t.cache_expiration) == (500, 3, 4)
    assert t.response_timeout == 30  # Pexip has no such field: the agent's default
    sinks = {s.name: s for s in config.sink}
    assert list(sinks) == ["CDR-collector", "analytics", "siem", "old-test-sink"]
    cdr = sinks["CDR-collector"]
    assert (cdr.description, cdr.url) == ("Call detail records for billing", "https://cdr.example.com/pexip/events")
    assert (cdr.username, cdr.password, cdr.version, cdr.verify_tls, cdr.bulk) == ("pexip-cdr", "", 2, True, False)
    assert cdr.password_file == str(tmp_path / "CDR-collector.password")
    assert cdr.locations == ["Oslo"]
    analytics = sinks["analytics"]
    assert (analytics.url, analytics.version, analytics.bulk, analytics.username) == (
        "http://10.44.5.20:8080/webhook",
        1,
        True,
        "",
    )
    assert analytics.locations == ["Oslo", "London"]  # used by two locations
    siem = sinks["siem"]
    assert (siem.verify_tls, siem.bulk, siem.username, siem.password_file) == (False, True, "svc-pexip", "")
    assert siem.locations == ["London", "Edge DMZ"]  # a URI in one location, a nested object in the other
    old = sinks["old-test-sink"]
    assert (old.description, old.locations) == ("", [])  # null description; used by no location
    assert cfg.resolve_secrets(config).sink[0].password == PASSWORD


def test_the_password_goes_to_a_0600_file_never_into_the_toml(capsys, tmp_path):
    path, err = full_import(capsys, tmp_path)
    text = open(path).read()
    assert "Tr0ub4dor" not in text and "password =" not in text
    assert "Tr0ub4dor" not in err
    secret_path = tmp_path / "CDR-collector.password"
    assert stat.S_IMODE(os.stat(secret_path).st_mode) == 0o600
    assert secret_path.read_text() == PASSWORD + "\n"
    assert sorted(os.listdir(tmp_path)) == ["CDR-collector.password", "agent.toml"]  # no file for sinks without one


def test_every_path_it_writes_is_absolute(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, _, err = run_import(capsys, "--locations", fixture("system_location.json"), "-o", "agent.toml")
    assert rc == 0, err
    doc = tomllib.loads((tmp_path / "agent.toml").read_text())
    assert doc["sink"][0]["password_file"] == str(tmp_path / "CDR-collector.password")
    written = [v for s in doc["sink"] for k, v in s.items() if k.endswith("_file")]
    assert written and all(os.path.isabs(p) for p in written)


@pytest.mark.parametrize(
    "extra",
    [
        (),
        ("--locations", "system_location.json"),
        ("--locations", "system_location.json", "--global", "global.json"),
        ("--global", "global_1.json", "--role", "proxying"),
        ("--locations", "system_location.json", "--location", "Singapore"),
    ],
)
@pytest.mark.parametrize("sinks", ["event_sink.json", "event_sink_3.json"])
@pytest.mark.parametrize("to_file", [True, False])
def test_check_passes_on_every_output(capsys, tmp_path, extra, sinks, to_file):
    args = [fixture(a) if a.endswith(".json") else a for a in extra]
    out_path = str(tmp_path / "agent.toml")
    rc, out, err = run_import(capsys, *args, *(["-o", out_path] if to_file else []), sinks=sinks)
    assert rc == 0, err
    if not to_file:
        assert out.startswith("# agent.toml written by")
        with open(out_path, "x") as fh:
            fh.write(out)
    check_passes(out_path)


def test_without_o_the_password_is_left_out_with_a_warning(capsys):
    rc, out, err = run_import(capsys, "--locations", fixture("system_location.json"))
    assert rc == 0
    assert "Tr0ub4dor" not in out + err
    assert "sink 'CDR-collector': its password is left out" in err
    assert tomllib.loads(out)["sink"][0]["username"] == "pexip-cdr"


def test_unused_fields_and_doubtful_sinks_are_named_on_stderr(capsys, tmp_path):
    _, err = full_import(capsys, tmp_path)
    lines = err.splitlines()
    unused = {line.split(":")[1].strip(): line for line in lines if "field(s) not used" in line}
    assert set(unused) == {"event_sink", "system_location", "global"}
    assert unused["event_sink"].endswith("not used: restart_date")
    for name in ("dns_servers", "ntp_servers", "mtu", "policy_server", "transcoding_location", "overflow_location1"):
        assert f" {name}," in unused["system_location"] or unused["system_location"].endswith(f" {name}")
    for name in ("es_metrics_update_interval", "enable_sip", "media_ports_start", "crypto_mode"):
        assert f" {name}," in unused["global"]
    for used in ("es_connection_timeout", "bulk_support", "verify_tls_certificate", "event_sinks"):
        assert used not in err
    assert "warning: sink 'old-test-sink' is used by no location: locations = [] (it runs nowhere)" in lines
    assert any("sink 'siem' has a username but the export has no password" in line for line in lines)
    assert any("'CDR collector' is named 'CDR-collector'" in line for line in lines)
    assert all(line.startswith(("warning: ", "wrote ")) for line in lines)


def test_a_location_the_export_does_not_have_and_a_sink_it_does_not_know_are_warned(capsys, tmp_path):
    locations = json.load(open(fixture("system_location.json")))
    locations["objects"][0]["event_sinks"].append("/api/admin/configuration/v1/event_sink/42/")
    path = tmp_path / "system_location.json"
    path.write_text(json.dumps(locations))
    rc, _, err = run_import(capsys, "--locations", str(path), location="Tromso")
    assert rc == 0
    assert "location 'Oslo' uses event sink '/api/admin/configuration/v1/event_sink/42/', which is not" in err
    assert "--location 'Tromso' is none of the locations" in err


def test_a_password_without_a_username_and_a_repeated_name_are_warned(capsys, tmp_path):
    answer = json.load(open(fixture("event_sink.json")))
    answer["objects"][1]["password"] = "alone-9Xq"
    answer["objects"][0]["name"] = "analytics"
    path = tmp_path / "in" / "event_sink.json"
    path.parent.mkdir()
    path.write_text(json.dumps(answer))
    rc, _, err = run_import(capsys, "-o", str(tmp_path / "agent.toml"), sinks=str(path))
    assert rc == 0
    assert "event sink 'analytics' is named 'analytics-2' (another sink has that name)" in err
    assert "sink 'analytics-2' has a password but no username: no Basic auth is sent" in err
    assert sorted(os.listdir(tmp_path)) == ["agent.toml", "analytics.password", "in"]
    assert "alone-9Xq" not in (tmp_path / "agent.toml").read_text() + err
    check_passes(str(tmp_path / "agent.toml"))


def test_o_over_an_existing_file_is_refused_and_the_file_unchanged(capsys, tmp_path):
    existing = tmp_path / "agent.toml"
    existing.write_text("# mine\n")
    rc, out, err = run_import(capsys, "-o", str(existing))
    assert rc == 1 and out == ""
    assert (
        err == f"eventsink-agent: {existing} already exists: import-pexip never writes over a file "
        "(choose another -o PATH, or move it away)\n"
    )
    assert existing.read_text() == "# mine\n"
    assert os.listdir(tmp_path) == ["agent.toml"]


def test_an_existing_password_file_is_refused_before_anything_is_written(capsys, tmp_path):
    secret = tmp_path / "CDR-collector.password"
    secret.write_text("old\n")
    rc, _, err = run_import(capsys, "-o", str(tmp_path / "agent.toml"))
    assert rc == 1 and f"{secret} already exists" in err
    assert secret.read_text() == "old\n" and sorted(os.listdir(tmp_path)) == ["CDR-collector.password"]


def _variants(tmp_path) -> dict[str, tuple[str, str, str]]:
    """name -> (--event-sinks file, its content, a phrase of the sentence)."""
    full = open(fixture("event_sink.json")).read()
    return {
        "html": ("<!DOCTYPE html>\n<html><body>Login</body></html>\n", "is HTML, not a saved answer"),
        "array": (json.dumps(json.load(open(fixture("event_sink.json")))["objects"]), "is a JSON array"),
        "truncated": (full[: len(full) // 2], "is not valid JSON"),
        "empty": ("", "is empty"),
        "wrong kind": (open(fixture("system_location.json")).read(), "holds system_location objects, not event_sink"),
        "wrong kind, one object": (open(fixture("global_1.json")).read(), "holds global objects, not event_sink"),
        "one page of several": (open(fixture("event_sink_page1.json")).read(), "one page of a longer list (2 of 4"),
        "a number": ("42", "holds a JSON int"),
        "meta only": ('{"meta": {"total_count": 0}}', 'has "meta" but no "objects"'),
        "bad type": (full.replace('"version": 1', '"version": "one"'), "version must be an integer (got str)"),
        "no url": (full.replace('"url": "http://10.44.5.20:8080/webhook"', '"url": null'), "event sink 2 has no url"),
        "check refuses": (
            full.replace("http://10.44.5.20", "ftp://10.44.5.20"),
            "does not pass check, so nothing is written: sink[1] (analytics).url",
        ),
    }


@pytest.mark.parametrize("variant", list(_variants(None)))
def test_a_file_that_is_not_such_an_answer_gets_one_sentence_and_exit_1(capsys, tmp_path, variant):
    content, phrase = _variants(tmp_path)[variant]
    bad = tmp_path / "event_sink.json"
    bad.write_text(content)
    rc, out, err = run_import(capsys, "-o", str(tmp_path / "agent.toml"), sinks=str(bad))
    assert rc == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("eventsink-agent: ") and phrase in err, err
    assert os.listdir(tmp_path) == ["event_sink.json"]


@pytest.mark.parametrize(
    "option, name, phrase",
    [
        ("--locations", "event_sink.json", "holds event_sink objects, not system_location"),
        ("--global", "system_location.json", "holds system_location objects, not global"),
        ("--locations", "missing.json", "cannot read"),
    ],
)
def test_a_wrong_file_for_the_other_options_is_one_sentence(capsys, option, name, phrase):
    rc, out, err = run_import(capsys, option, fixture(name))
    assert (rc, out) == (1, "") and err.count("\n") == 1 and phrase in err, err


def test_the_installed_command_answers_an_html_file_without_a_traceback(tmp_path):
    bad = tmp_path / "event_sink.json"
    bad.write_text("<html><head><title>401 Unauthorized</title></head></html>")
    done = subprocess.run(
        [ENTRY_POINT, "import-pexip", "--event-sinks", str(bad), "--address", "10.44.99.2", "--location", "Oslo"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1 and done.stdout == ""
    assert (
        done.stderr == f"eventsink-agent: {bad} is HTML, not a saved answer of "
        "/api/admin/configuration/v1/event_sink/ (was it a login or error page?)\n"
    )


def test_sink_names_become_valid_and_unique():
    taken: set[str] = set()
    names = [sink_name(n, i, taken) for i, n in enumerate(["CDR collector", "CDR/collector", "  ", "ok.name_1"], 1)]
    assert names == ["CDR-collector", "CDR-collector-2", "sink-3", "ok.name_1"]
    assert all(config_types.SINK_NAME_RE.match(n) for n in names)


@given(st.text())
def test_any_string_survives_as_a_toml_value(text):
    assert tomllib.loads(f"x = {toml_value(text)}")["x"] == text
