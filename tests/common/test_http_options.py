"""A sink's HTTP options (docs/config.md and docs/delivery.md): defaults, every `check` rejection with
its key and line (through `eventsink-agent check`, exit 1, no traceback), the full
example accepted, and their secrets kept out of check's output, reprs and logs."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import msgspec
import pytest

from agent import cli
from common import config as cfg
from common import config_types, logs
from tests.tls_files import make_pki

HEADER_SECRET = "hdr-value-secret-1"
TOKEN = "bearer-token-secret-1"
PROXY_PASSWORD = "proxy-pass-secret-1"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

FULL = """\
[node]
address = "10.44.99.2"
location = "Oslo"

[agent]
retention_hours = 48

[[sink]]
name = "cdr"
url = "https://collector.example.com/pexip"
locations = ["Oslo"]
headers = {{ "X-Api-Key" = "{header}", "X-Tenant" = "oslo" }}
bearer_token_file = "{token_file}"
client_cert = "{cert}"
client_key = "{key}"
ca_file = "{ca}"
proxy = "http://proxyuser:{proxy_password}@proxy.example.com:3128"
compression = "gzip"
http_version = "2"
max_rate = 50
dead_letter_after = 5
dead_letter_statuses = [400, 422]
"""


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("http-options"))
    pki = make_pki(d)
    token_file = os.path.join(d, "cdr.token")
    with open(token_file, "w") as fh:
        fh.write(f"{TOKEN}\n# rotated by vault-agent\n")
    os.chmod(token_file, 0o600)
    not_pem = os.path.join(d, "not.pem")
    with open(not_pem, "w") as fh:
        fh.write("just text\n")
    readable_key = os.path.join(d, "readable.key")
    with open(pki.client_key) as src, open(readable_key, "w") as dst:
        dst.write(src.read())
    os.chmod(readable_key, 0o644)
    return {
        "dir": d,
        "pki": pki,
        "token_file": token_file,
        "not_pem": not_pem,
        "readable_key": readable_key,
        "full": FULL.format(
            header=HEADER_SECRET,
            token_file=token_file,
            cert=pki.client_cert,
            key=pki.client_key,
            ca=pki.ca_cert,
            proxy_password=PROXY_PASSWORD,
        ),
    }


def secrets_of(files) -> list[str]:
    return [HEADER_SECRET, TOKEN, PROXY_PASSWORD, files["pki"].client_key]


def line_of(text: str, start: str) -> int:
    return next(n for n, line in enumerate(text.split("\n"), start=1) if line.startswith(start))


def test_defaults_are_those_of_the_contract():
    c = cfg.parse(
        '[node]\naddress = "10.44.99.2"\nlocation = "Oslo"\n[[sink]]\nname = "a"\nurl = "http://h/"\n'
        'locations = ["Oslo"]\n'
    ).config
    s = c.sink[0]
    assert (s.headers, s.bearer_token_file, s.client_cert, s.client_key, s.proxy) == ({}, "", "", "", "")
    assert (s.compression, s.http_version, s.max_rate) == ("none", "1.1", 0)
    assert (s.dead_letter_after, s.dead_letter_statuses) == (0, [400, 413, 415, 422])
    assert c.agent.retention_hours == 24


def test_the_full_example_passes_check_and_shows_no_secret(files, tmp_path, capsys):
    path = tmp_path / "agent.toml"
    path.write_text(files["full"])
    assert cli.main(["check", "--config", str(path)]) == 0
    out = capsys.readouterr()
    assert "OK (1 sink, 1 at this location)" in out.out and out.err == ""
    c = cfg.load_or_raise(str(path))
    s = c.sink[0]
    assert s.headers == {"X-Api-Key": HEADER_SECRET, "X-Tenant": "oslo"}
    assert (s.compression, s.http_version, s.max_rate, s.dead_letter_after) == ("gzip", "2", 50, 5)
    assert c.agent.retention_hours == 48
    shown = repr(c) + str(s) + repr(cfg.resolve_secrets(c))
    for secret in secrets_of(files):
        assert secret not in shown, secret
    assert "X-Api-Key" in shown and "proxy.example.com:3128" in shown


def test_the_token_reaches_the_worker_spec_from_the_files_first_line(files):
    c = cfg.parse(files["full"]).config
    assert c.sink[0].bearer_token == ""  # the loaded config never holds it
    resolved = cfg.resolve_secrets(c)
    back, name, _ = cfg.decode_worker_spec(cfg.encode_spec(resolved, "cdr"))
    assert back.sink_named("cdr").bearer_token == TOKEN and name == "cdr"


def test_every_new_secret_is_masked_in_logs(files, capsys):
    c = cfg.parse(files["full"]).config
    secrets = logs.config_secrets(c)
    for secret in secrets_of(files):
        assert secret in secrets
    logs.configure("test", secrets)
    try:
        logging.getLogger("t").error("POST failed: %s %s %s %s", *secrets_of(files))
    finally:
        logging.getLogger().handlers.clear()
    err = capsys.readouterr().err
    assert "POST failed" in err and all(s not in err for s in secrets_of(files)), err


def mutate(files, *replacements) -> str:
    """FULL with each (old, new) replaced (a list of them for several)."""
    if len(replacements) == 1:
        replacements = replacements[0]
    text = files["full"]
    for old, new in replacements if isinstance(replacements, list) else [replacements]:
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


def header(value: str) -> tuple[str, str]:
    return f'headers = {{ "X-Api-Key" = "{HEADER_SECRET}", "X-Tenant" = "oslo" }}', f"headers = {{ {value} }}"


def token_line(files) -> str:
    return f'bearer_token_file = "{files["token_file"]}"'


# (old, new) on FULL, the key reported, the TOML key whose line it names, words of the message
CASES = {
    "header name not a token": (lambda f: header('"X Api" = "v"'), "headers", "headers", "not an HTTP token"),
    "header name empty": (lambda f: header('"" = "v"'), "headers", "headers", "not an HTTP token"),
    "header value with a line break": (
        lambda f: header(f'"X-A" = "{HEADER_SECRET}\\r\\nX-B: 1"'),
        "headers",
        "headers",
        "line break",
    ),
    "headers not a table": (
        lambda f: (header("")[0], f'headers = "{HEADER_SECRET}"'),
        "headers",
        "headers",
        "a table of strings",
    ),
    "bearer_token is not a key": (
        lambda f: ("max_rate = 50", f'max_rate = 50\nbearer_token = "{TOKEN}"'),
        "bearer_token",
        "bearer_token",
        "unknown key",
    ),
    "bearer_token_file with username": (
        lambda f: ("max_rate = 50", 'max_rate = 50\nusername = "u"'),
        "bearer_token_file",
        "bearer_token_file",
        "not both",
    ),
    "bearer_token_file missing": (
        lambda f: (token_line(f), 'bearer_token_file = "/nonexistent/esa.token"'),
        "bearer_token_file",
        "bearer_token_file",
        "cannot read",
    ),
    "client_cert without client_key": (
        lambda f: (f'client_key = "{f["pki"].client_key}"\n', ""),
        "client_key",
        "client_cert",
        "required",
    ),
    "client_key without client_cert": (
        lambda f: (f'client_cert = "{f["pki"].client_cert}"\n', ""),
        "client_cert",
        "client_key",
        "required",
    ),
    "client_key readable by others": (
        lambda f: (f["pki"].client_key, f["readable_key"]),
        "client_key",
        "client_key",
        "readable by other users",
    ),
    "client_key missing": (
        lambda f: (f["pki"].client_key, "/nonexistent/esa.key"),
        "client_key",
        "client_key",
        "cannot read",
    ),
    "client_key not PEM": (lambda f: (f["pki"].client_key, f["not_pem"]), "client_key", "client_key", "not a PEM"),
    "client_key of another certificate": (
        lambda f: (f["pki"].client_key, f["pki"].server_key),
        "client_key",
        "client_key",
        "does not belong",
    ),
    "client_cert missing": (
        lambda f: (f["pki"].client_cert, "/nonexistent/esa.pem"),
        "client_cert",
        "client_cert",
        "cannot read",
    ),
    "client_cert not PEM": (lambda f: (f["pki"].client_cert, f["not_pem"]), "client_cert", "client_cert", "not a PEM"),
    "ca_file not PEM": (
        lambda f: (f'ca_file = "{f["pki"].ca_cert}"', f'ca_file = "{f["not_pem"]}"'),
        "ca_file",
        "ca_file",
        "not a PEM",
    ),
    "proxy socks": (lambda f: ("http://proxyuser", "socks5://proxyuser"), "proxy", "proxy", "http:// or https://"),
    "proxy without port": (lambda f: ("proxy.example.com:3128", "proxy.example.com"), "proxy", "proxy", "port"),
    "dead letter status 500": (
        lambda f: ("[400, 422]", "[400, 500]"),
        "dead_letter_statuses",
        "dead_letter_statuses",
        "500",
    ),
    "dead letter status 399": (
        lambda f: ("[400, 422]", "[399]"),
        "dead_letter_statuses",
        "dead_letter_statuses",
        "399",
    ),
    "dead letter status 408": (
        lambda f: ("[400, 422]", "[408]"),
        "dead_letter_statuses",
        "dead_letter_statuses",
        "408",
    ),
    "dead letter status 429": (
        lambda f: ("[400, 422]", "[429, 400]"),
        "dead_letter_statuses",
        "dead_letter_statuses",
        "429",
    ),
    "dead_letter_after negative": (
        lambda f: ("dead_letter_after = 5", "dead_letter_after = -1"),
        "dead_letter_after",
        "dead_letter_after",
        "negative",
    ),
    "max_rate negative": (lambda f: ("max_rate = 50", "max_rate = -0.5"), "max_rate", "max_rate", "negative"),
    "compression br": (
        lambda f: ('compression = "gzip"', 'compression = "br"'),
        "compression",
        "compression",
        "'none', 'gzip'",
    ),
    "http_version 3": (
        lambda f: ('http_version = "2"', 'http_version = "3"'),
        "http_version",
        "http_version",
        "'1.1', '2'",
    ),
    "http_version as a number": (
        lambda f: ('http_version = "2"', "http_version = 2"),
        "http_version",
        "http_version",
        "a string",
    ),
    "retention_hours negative": (
        lambda f: ("retention_hours = 48", "retention_hours = -1"),
        "agent.retention_hours",
        "retention_hours",
        "negative",
    ),
}
for _name in (
    "Host",
    "Content-Type",
    "content-length",
    "Content-Encoding",
    "User-Agent",
    "webhook-id",
    "Webhook-Signature",
):
    CASES[f"header {_name} set by the agent"] = (
        lambda f, n=_name: header(f'"{n}" = "v"'),
        "headers",
        "headers",
        "set by the agent",
    )
CASES["Authorization with bearer_token_file"] = (
    lambda f: header('"Authorization" = "Bearer x"'),
    "headers",
    "headers",
    "Authorization",
)
CASES["Authorization with username"] = (
    lambda f: [(token_line(f), 'username = "u"'), header('"authorization" = "x"')],
    "headers",
    "headers",
    "Authorization",
)


CASES["bearer_token_file with credentials in the url"] = (
    lambda f: ("https://collector", "https://u:pw@collector"),
    "bearer_token_file",
    "bearer_token_file",
    "not both",
)


@pytest.mark.parametrize("case", sorted(CASES))
def test_check_rejects_with_key_and_line(files, tmp_path, capsys, case):
    mutation, key, line_key, words = CASES[case]
    text = mutate(files, mutation(files))
    path = tmp_path / "agent.toml"
    path.write_text(text)
    assert cli.main(["check", "--config", str(path)]) == 1  # an exception here would be a traceback
    out = capsys.readouterr()
    assert out.out == ""
    line = line_of(text, f"{line_key} =") if line_key != "retention_hours" else line_of(text, "retention_hours")
    prefix = f"{path}:{line}: "
    hits = [x for x in out.err.splitlines() if x.startswith(prefix) and f"{key}:" in x and words in x]
    assert hits, out.err
    for secret in secrets_of(files):
        assert secret not in out.err, out.err


def test_authorization_header_is_allowed_without_username_or_token(files):
    text = mutate(files, token_line(files) + "\n", "").replace('"X-Tenant" = "oslo"', '"Authorization" = "ApiKey k"')
    r = cfg.parse(text)
    assert r.problems == [] and r.config.sink[0].headers["Authorization"] == "ApiKey k"


def test_client_certificate_on_an_http_url_is_a_warning(files):
    r = cfg.parse(mutate(files, "https://collector", "http://collector"))
    assert r.problems == [] and any("client_cert" in w.key for w in r.warnings)


def test_check_process_prints_one_line_per_problem_without_traceback(files, tmp_path):
    text = files["full"]
    for old, new in (
        ("max_rate = 50", "max_rate = -1"),
        ('"X-Tenant"', '"Host"'),
        ("http://proxyuser", "ftp://proxyuser"),
    ):
        text = text.replace(old, new)
    path = tmp_path / "agent.toml"
    path.write_text(text)
    out = subprocess.run(
        [sys.executable, "-m", "agent", "check", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
    )
    assert out.returncode == 1 and "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 3 and all(x.startswith(f"{path}:") for x in lines), lines
    assert not any(s in out.stderr for s in secrets_of(files))


def test_a_config_round_trips_through_the_spec_with_every_option(files):
    c = cfg.parse(files["full"]).config
    assert msgspec.json.decode(cfg.encode_spec(c), type=cfg._Spec).config == c


NEW_SINK_KEYS = (
    "headers",
    "bearer_token_file",
    "client_cert",
    "client_key",
    "proxy",
    "compression",
    "http_version",
    "max_rate",
    "dead_letter_after",
    "dead_letter_statuses",
)


def test_the_shipped_agent_toml_shows_each_option_commented_out_with_its_default():
    with open(os.path.join(REPO, "packaging", "etc", "agent.toml"), encoding="utf-8") as fh:
        text = fh.read()
    defaults = config_types.SinkConfig(name="x", url="http://h/", locations=["Oslo"])
    for key in NEW_SINK_KEYS:
        [line] = [x for x in text.splitlines() if x.startswith(f"#{key} = ")]
        value = cfg.tomllib.loads(line[1:].split("#", 1)[0])[key]
        assert value == getattr(defaults, key), line
    assert "#retention_hours = 24" in text


def test_the_readme_documents_each_option_with_a_valid_example(files):
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as fh:
        section = fh.read().split("### HTTP options of a sink", 1)[1]
    example = section.split("```toml\n", 1)[1].split("```", 1)[0]
    for key in NEW_SINK_KEYS:
        assert f"\n{key} = " in "\n" + example, key
    # the example, with its files made real, passes check
    p = files["pki"]
    example = (
        example.replace("/etc/eventsink-agent/cdr.token", files["token_file"])
        .replace("/etc/eventsink-agent/cdr.crt", p.client_cert)
        .replace("/etc/eventsink-agent/cdr.key", p.client_key)
    )
    text = (
        '[node]\naddress = "10.44.99.2"\nlocation = "Oslo"\n[[sink]]\nname = "cdr"\n'
        'url = "https://collector.example.com/pexip"\nlocations = ["Oslo"]\n' + example
    )
    r = cfg.parse(text)
    assert r.problems == [] and r.warnings == [], r.problems
