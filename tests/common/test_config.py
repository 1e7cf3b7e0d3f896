"""Config loading: defaults, every validation rule, problems with keys and lines."""

import os

import pytest

from common import config as cfg
from common import config_types

MINIMAL = """
[node]
address = "10.44.99.2"
location = "Oslo"

[[sink]]
name = "cdr"
url = "https://collector.example.com/pexip"
locations = ["Oslo", "London"]
"""


def problems(text):
    r = cfg.parse(text)
    return [p.render("agent.toml") for p in r.problems]


def test_minimal_config_gets_every_documented_default():
    r = cfg.parse(MINIMAL)
    assert r.problems == []
    c = r.config
    assert c.node.role == "transcoding"
    a = c.agent
    assert (a.runtime_dir, a.state_dir) == ("/run/eventsink-agent", "/var/lib/eventsink-agent")
    assert a.publish_endpoint == "ipc:///run/eventsink-agent/publish.sock"
    assert a.control_socket == "/run/eventsink-agent/control.sock"
    assert (a.metrics_listen, a.max_journal_mb, a.max_message_kb) == ("127.0.0.1:9712", 1024, 256)
    t = c.tuning
    assert (t.connection_timeout, t.response_timeout, t.initial_retry_backoff, t.max_retry_backoff) == (7, 30, 1, 1800)
    assert (t.cache_expiration, t.media_streams_wait, t.max_background_posts) == (2, 1, 1000)
    s = c.sink[0]
    assert (s.version, s.username, s.password, s.verify_tls, s.ca_file, s.bulk) == (2, "", "", True, "", False)
    assert (s.bulk_max_events, s.bulk_interval, s.max_in_flight, s.secret, s.events) == (100, 1.0, 1, "", [])
    assert [x.name for x in c.sinks_here()] == ["cdr"]


def test_runtime_dir_moves_the_derived_endpoints():
    c = cfg.parse(MINIMAL.replace("[[sink]]", '[agent]\nruntime_dir = "/tmp/x"\n\n[[sink]]')).config
    assert c.agent.publish_endpoint == "ipc:///tmp/x/publish.sock"
    assert c.agent.control_socket == "/tmp/x/control.sock"


@pytest.mark.parametrize(
    "mutation, key, line",
    [
        (lambda t: t + '\n[[sink]]\nname = "cdr"\nurl = "http://b"\nlocations = ["Oslo"]\n', "sink[1] (cdr).name", 12),
        (lambda t: t.replace('name = "cdr"', 'name = "cdr"\nversion = 3'), "sink[0] (cdr).version", 8),
        (lambda t: t.replace("https://collector", "ftp://collector"), "sink[0] (cdr).url", 8),
        (lambda t: t.replace('location = "Oslo"', 'location = "Oslo"\ncolour = "blue"'), "node.colour", 5),
        (lambda t: t.replace('address = "10.44.99.2"\n', ""), "node.address", None),
        (lambda t: t + "\n[tuning]\nmax_retry_backoff = -5\n", "tuning.max_retry_backoff", 12),
        (lambda t: t.replace('location = "Oslo"', 'location = "Oslo"\nrole = "edge"'), "node.role", 5),
        (lambda t: t.replace('name = "cdr"', "name = 7"), "sink[0].name", 7),
        (lambda t: t.replace('name = "cdr"', 'name = "cdr"\nsecret = "not-whsec"'), "sink[0] (cdr).secret", 8),
        (
            lambda t: t.replace('name = "cdr"', 'name = "cdr"\nevents = ["conference_exploded"]'),
            "sink[0] (cdr).events",
            8,
        ),
        (lambda t: t.replace('name = "cdr"', 'name = "cdr"\nmax_in_flight = 0'), "sink[0] (cdr).max_in_flight", 8),
        (lambda t: t.replace('address = "10.44.99.2"', 'address = "not-an-ip"'), "node.address", 3),
    ],
)
def test_each_problem_names_its_key_and_line(mutation, key, line):
    found = problems(mutation(MINIMAL))
    assert found, "expected a problem"
    match = [p for p in found if f": {key}:" in p or p.startswith(f"agent.toml: {key}:")]
    assert match, found
    if line is not None:
        assert any(p.startswith(f"agent.toml:{line}: ") for p in match), match


def test_broken_toml_reports_its_line():
    r = cfg.parse(MINIMAL + "\n[[sink]\nname = \n")
    assert r.config is None and len(r.problems) == 1
    assert r.problems[0].key == "toml" and r.problems[0].line is not None


def test_unreadable_file_is_a_problem_not_an_exception(tmp_path):
    r = cfg.load(str(tmp_path / "missing.toml"))
    assert r.config is None and "cannot read" in r.problems[0].message


def test_warnings_do_not_fail(tmp_path):
    pw = tmp_path / "pw"
    pw.write_text("hunter2\n")
    os.chmod(pw, 0o644)
    text = MINIMAL.replace('name = "cdr"', f'name = "cdr"\nverify_tls = false\npassword_file = "{pw}"')
    text += '\n[[sink]]\nname = "london-only"\nurl = "http://x"\nlocations = ["London"]\n'
    r = cfg.parse(text)
    assert r.problems == [] and r.config is not None
    rendered = " ".join(w.render() for w in r.warnings)
    assert "verify_tls" in rendered and "readable by other users" in rendered and "london-only" in rendered
    assert [s.name for s in r.config.sinks_here()] == ["cdr"]
    resolved = cfg.resolve_secrets(r.config)
    assert resolved.sink[0].password == "hunter2"


def test_an_empty_locations_list_is_a_warning_not_a_problem():
    # An import from Pexip (docs/import-pexip.md) writes one for a sink no location uses.
    r = cfg.parse(MINIMAL.replace('locations = ["Oslo", "London"]', "locations = []"))
    assert r.problems == [] and r.config is not None
    assert [w.render("agent.toml") for w in r.warnings] == [
        "agent.toml:9: sink[0] (cdr).locations: is empty: the sink runs on no node"
    ]
    assert r.config.sinks_here() == []


def test_password_and_password_file_are_exclusive(tmp_path):
    pw = tmp_path / "pw"
    pw.write_text("x")
    text = MINIMAL.replace('name = "cdr"', f'name = "cdr"\npassword = "a"\npassword_file = "{pw}"')
    assert any("password_file" in p for p in problems(text))


def test_redact_url_and_spec_round_trip():
    assert config_types.redact_url("https://user:pw@host.example:8443/x?y=1") == "https://host.example:8443/x?y=1"
    assert config_types.redact_url("http://host/x") == "http://host/x"
    c = cfg.parse(MINIMAL).config
    back, name = cfg.decode_spec(cfg.encode_spec(c, "cdr"))
    assert back == c and name == "cdr"


def test_secret_key_decodes_standard_webhooks_secret():
    assert config_types.secret_key("whsec_" + "aGVsbG8gd29ybGQ=") == b"hello world"


def test_the_readme_config_example_is_valid():
    readme = os.path.join(os.path.dirname(__file__), "..", "..", "README.md")
    text = open(readme).read()
    example = text.split("```toml\n", 1)[1].split("```", 1)[0]
    r = cfg.parse(example)
    assert r.problems == [], r.problems
    assert [s.name for s in r.config.sinks_here()] == ["cdr"]
