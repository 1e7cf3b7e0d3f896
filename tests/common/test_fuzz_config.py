"""Fuzzing the config loader (hypothesis): `common.config.parse` never raises.

Random text, TOML-ish text built from real keys and broken values, and random
valid TOML documents (checked to round-trip through tomllib first) all come
back as problems or as a config, never as an exception; a config round-trips
through the child spec; and no password, signing secret or URL password ever
appears in a problem, a warning or a config's repr, nor does a header value or
a proxy's password. `make test` runs a few examples per test;
`FUZZ_EXAMPLES=20000` (make fuzz) runs many.
"""

from __future__ import annotations

import datetime
import math
import os
import re
import tomllib

import msgspec
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from common import config as cfg
from common import config_types as types

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "0")) or 150
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)

SECTIONS = {
    "node": [f.name for f in msgspec.structs.fields(types.NodeConfig)],
    "agent": [f.name for f in msgspec.structs.fields(types.AgentConfig)],
    "tuning": [f.name for f in msgspec.structs.fields(types.TuningConfig)],
    "sink": [f.name for f in msgspec.structs.fields(types.SinkConfig)],
}
SECRET_RE = re.compile(r"(?:pw|sec|urlpw)[0-9a-f]{8}")  # the shape of every secret generated here
secret_tokens = st.builds(
    lambda kind, n: f"{kind}{n:08x}", st.sampled_from(["pw", "sec", "urlpw"]), st.integers(0, 2**32 - 1)
)


def check_result(text: str | bytes, secrets: list[str] = ()) -> types.LoadResult:
    """parse() and every invariant that holds for any input."""
    result = cfg.parse(text)
    assert isinstance(result, types.LoadResult)
    assert (result.config is None) == bool(result.problems), result
    nlines = (text.decode("utf-8", "replace") if isinstance(text, bytes) else text).count("\n") + 2
    for p in result.problems + result.warnings:
        assert isinstance(p, types.Problem) and p.key and isinstance(p.key, str) and p.message, p
        assert p.line is None or 1 <= p.line <= nlines, (p, nlines)
        rendered = p.render("agent.toml")
        for secret in secrets:
            assert secret not in rendered, f"a secret leaked into a problem: {rendered!r}"
    if result.config is not None:
        config = result.config
        assert isinstance(config, types.Config)
        assert cfg.decode_spec(cfg.encode_spec(config, "x")) == (config, "x")
        paths = types.Paths.of(config)
        assert paths.control_socket and paths.publish_endpoint
        assert all(config.node.location in s.locations for s in config.sinks_here())
        shown = repr(config)
        for s in config.sink:
            assert s.version in (1, 2) and s.name and types.redact_url(s.url)
            for secret in secrets:
                assert secret not in shown, f"a secret leaked into a repr: {shown!r}"
            shown_elsewhere = str((s.name, types.redact_url(s.url), s.version))  # what status shows of its config
            for secret in secrets:
                assert secret not in shown_elsewhere, (
                    f"a secret leaked into a sink's name or redacted URL: {shown_elsewhere!r}"
                )
    return result


# ------------------------------------------------------------ random text


@FUZZ
@given(text=st.text(max_size=300))
def test_random_text(text):
    check_result(text)


@FUZZ
@given(raw=st.binary(max_size=300))
def test_random_bytes(raw):
    check_result(raw)


def bare_or_quoted(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else toml_string(key)


fragments = st.one_of(
    st.sampled_from(
        [
            '"x"',
            "'lit'",
            '"""multi\nline"""',
            '"unterminated',
            "1",
            "-0",
            "1_000",
            "0x1F",
            "0o17",
            "0b101",
            "1e400",
            "-inf",
            "nan",
            "3.14",
            "1.",
            "true",
            "false",
            "True",
            "1979-05-27T07:32:00Z",
            "07:32:00",
            "1979-05-27",
            "[]",
            '[1, "a", [2]]',
            "[1,,2]",
            "{}",
            "{a = 1}",
            "{a = 1,}",
            "{ a.b = 2 }",
            "",
            '"\\u0000"',
            '"\\uD800"',
            '"\\q"',
            '"10.44.99.2"',
            '"Oslo"',
            '["Oslo"]',
            '"http://u:p@127.0.0.1:1/"',
            '"whsec_AAAA"',
            '"whsec_!!!"',
            '"/tmp"',
            '"ipc:///tmp/x"',
            '"127.0.0.1:0"',
        ]
    ),
    st.text(max_size=12),
)
headers = st.sampled_from(
    [
        "[node]",
        "[agent]",
        "[tuning]",
        "[[sink]]",
        "[sink]",
        "[[node]]",
        "[node.x]",
        "[ node ]",
        "[[sink.events]]",
        "[a.b.c]",
        "[]",
        "[[]]",
        '["node"]',
        "[node",
        "[[sink]",
    ]
)
known_keys = st.sampled_from(
    sorted({k for keys in SECTIONS.values() for k in keys} | {"node", "sink", "x", "a.b", '"q"'})
)
lines = st.one_of(
    headers,
    st.builds(lambda k, v: f"{k} = {v}", known_keys, fragments),
    st.builds(lambda k, v: f"{k}={v}", st.text(max_size=8), fragments),
    st.sampled_from(["# comment", "", "   ", "=", "= 1", "a = 1 # c", "a = 1 b = 2", "\t"]),
)


@FUZZ
@given(text=st.lists(lines, max_size=25).map("\n".join))
@example(text="a = " + "[" * 2_000 + "]" * 2_000)
@example(text="a = " + "{b = " * 1_500 + "1" + "}" * 1_500)
def test_toml_ish_text(text):
    check_result(text)


# ------------------------------------------------------------ random valid TOML documents


def toml_string(s: str) -> str:
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "inf" if v == math.inf else "-inf" if v == -math.inf else repr(v)
    if isinstance(v, str):
        return toml_string(v)
    if isinstance(v, (datetime.datetime, datetime.date, datetime.time)):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{bare_or_quoted(k)} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(v)


def toml_document(doc: dict) -> str:
    """DOC as TOML text: scalars first, then [tables] and [[arrays of tables]]."""
    out, tables = [], []
    for k, v in doc.items():
        if isinstance(v, dict):
            tables.append(
                f"[{bare_or_quoted(k)}]\n"
                + "".join(f"{bare_or_quoted(kk)} = {toml_value(vv)}\n" for kk, vv in v.items())
            )
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            for item in v:
                tables.append(
                    f"[[{bare_or_quoted(k)}]]\n"
                    + "".join(f"{bare_or_quoted(kk)} = {toml_value(vv)}\n" for kk, vv in item.items())
                )
        else:
            out.append(f"{bare_or_quoted(k)} = {toml_value(v)}\n")
    return "".join(out) + "\n".join(tables)


scalars = st.one_of(
    st.text(max_size=12),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False),
    st.booleans(),
    st.datetimes(min_value=datetime.datetime(1, 1, 1), timezones=st.none() | st.just(datetime.UTC)),
    st.dates(),
    st.times(),
)
toml_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(min_size=1, max_size=6), inner, max_size=3),
    max_leaves=8,
)
plausible = {  # values of the right type (often), to get past the structural checks
    "address": st.sampled_from(["10.44.99.2", "::1", "999.1.1.1", "", "host"]) | st.ip_addresses().map(str),
    "location": st.sampled_from(["Oslo", "London", ""]),
    "role": st.sampled_from(["transcoding", "proxying", "edge"]),
    "runtime_dir": st.sampled_from(["/tmp/esa-fuzz/run", "relative", "/" + "r" * 120]),
    "state_dir": st.sampled_from(["/tmp/esa-fuzz/state", "relative"]),
    "publish_endpoint": st.sampled_from(["", "ipc:///tmp/esa-fuzz/p.sock", "tcp://127.0.0.1:5555", "udp://x"]),
    "control_socket": st.sampled_from(["", "/tmp/esa-fuzz/c.sock", "c.sock"]),
    "metrics_listen": st.sampled_from(["127.0.0.1:9712", "[::1]:0", ":", "127.0.0.1:99999"]),
    "name": st.sampled_from(["cdr", "siem", "-bad", "a" * 65, ""]) | st.text(max_size=6),
    "url": st.sampled_from(
        ["http://127.0.0.1:1/e", "https://h/e", "ftp://h/", "http://", "http://[::1", "http://h:99999/"]
    ),
    "locations": st.sampled_from([["Oslo"], ["London"], [], ["Oslo", "London"]]),
    "version": st.sampled_from([1, 2, 3, 0, -1]),
    "events": st.lists(st.sampled_from(["conference_started", "eventsink_started", "nope"]), max_size=2),
    "password_file": st.sampled_from(["", "/nonexistent/esa-fuzz.secret"]),
    "ca_file": st.sampled_from(["", "/nonexistent/esa-fuzz.pem"]),
    "bearer_token_file": st.sampled_from(["", "/nonexistent/esa-fuzz.token"]),
    "client_cert": st.sampled_from(["", "/nonexistent/esa-fuzz.pem"]),
    "client_key": st.sampled_from(["", "/nonexistent/esa-fuzz.key"]),
    "compression": st.sampled_from(["none", "gzip", "br"]),
    "http_version": st.sampled_from(["1.1", "2", "3"]),
    "max_rate": st.sampled_from([0, 10, 0.5, -1]),
    "dead_letter_after": st.sampled_from([0, 3, -1]),
    "dead_letter_statuses": st.lists(st.sampled_from([400, 408, 413, 429, 500, 99]), max_size=3),
    "retention_hours": st.sampled_from([0, 24, -1]),
}


def section(keys: list[str]) -> st.SearchStrategy:
    """Some of KEYS (and maybe an unknown key), each with a plausible or a random value."""
    values = {k: (plausible[k] | toml_values) if k in plausible else toml_values for k in keys}
    return st.fixed_dictionaries({}, optional={**values, "zz_unknown": toml_values})


@st.composite
def http_secrets(draw, secrets: list[str]) -> dict:
    """Header values and proxy credentials (secrets, appended to SECRETS), well formed or not."""
    out: dict = {}
    if draw(st.booleans()):
        value = draw(secret_tokens)
        name = draw(st.sampled_from(["X-Api-Key", "Host", "bad name", "webhook-id", "Authorization"]))
        out["headers"] = draw(st.sampled_from([{name: value}, {name: [value]}, {name: value + "\n"}]))
        secrets.append(value)
    if draw(st.booleans()):
        password = draw(secret_tokens)
        scheme, port = (
            draw(st.sampled_from(["http", "https", "socks5", "ftp"])),
            draw(st.sampled_from([":3128", "", ":x"])),
        )
        out["proxy"] = f"{scheme}://proxyuser:{password}@proxy.example.com{port}"
        secrets.append(password)
    return out


@st.composite
def documents(draw) -> tuple[dict, list[str]]:
    """A TOML document close to a real config (with secrets planted in it) and the secrets."""
    secrets: list[str] = []
    doc: dict = {}
    doc["node"] = {"address": "10.44.99.2", "location": "Oslo", **draw(section(SECTIONS["node"]))}
    for name in ("agent", "tuning"):
        if draw(st.booleans()):
            doc[name] = draw(section(SECTIONS[name]))
    sinks = []
    for i in range(draw(st.integers(0, 3))):
        s = {"name": f"s{i}", "url": "http://127.0.0.1:9/e", "locations": ["Oslo"], **draw(section(SECTIONS["sink"]))}
        for key in ("password", "secret", "username"):
            s.pop(key, None)
        pw, sec, urlpw = draw(secret_tokens), draw(secret_tokens), draw(secret_tokens)
        shape = draw(st.sampled_from(["str", "list", "int-ish", "absent"]))
        if shape == "str":
            s["password"], s["secret"] = pw, draw(st.sampled_from([f"whsec_{sec}", sec, f"whsec_{sec}=="]))
        elif shape == "list":
            s["password"], s["secret"] = [pw], {"k": sec}
        elif shape == "int-ish":
            s["password"], s["secret"] = {"value": pw}, [f"whsec_{sec}"]
        if draw(st.booleans()):
            s["url"] = f"http://user:{urlpw}@127.0.0.1:9/e"
            secrets.append(urlpw)
        s.update(draw(http_secrets(secrets)))
        if shape != "absent":
            secrets += [pw, sec]
        sinks.append(s)
    if sinks:
        doc["sink"] = sinks
    if draw(st.booleans()):
        doc[draw(st.sampled_from(["extra", "node2", "x"]))] = draw(toml_values)
    return doc, secrets


@FUZZ
@given(doc_and_secrets=documents())
def test_random_valid_toml_documents(doc_and_secrets):
    doc, secrets = doc_and_secrets
    text = toml_document(doc)
    assert tomllib.loads(text) == doc  # the generator writes the document it means to
    assert all(SECRET_RE.fullmatch(s) for s in secrets)
    check_result(text, secrets)


@FUZZ
@given(
    doc=st.dictionaries(
        st.sampled_from(["node", "agent", "tuning", "sink", "x"]),
        toml_values
        | st.dictionaries(known_keys.filter(lambda k: "." not in k and '"' not in k), toml_values, max_size=4),
        max_size=5,
    )
)
def test_random_shapes(doc):
    check_result(toml_document(doc))


def test_mistyped_secrets_are_not_echoed_in_problems():
    text = toml_document(
        {
            "node": {"address": "10.44.99.2", "location": "Oslo"},
            "sink": [
                {
                    "name": "a",
                    "url": "http://127.0.0.1:9/e",
                    "locations": ["Oslo"],
                    "password": ["pw0badc0de"],
                    "secret": {"k": "sec0badc0de"},
                },
                {
                    "name": "b",
                    "url": "http://u:urlpw0badc0de@[::1/e",
                    "locations": ["Oslo"],
                    "secret": "whsec_sec1badc0de!",
                },
            ],
        }
    )
    result = check_result(text, ["pw0badc0de", "sec0badc0de", "urlpw0badc0de", "sec1badc0de"])
    keys = {p.key for p in result.problems}
    assert {"sink[0] (a).password", "sink[0] (a).secret", "sink[1] (b).url", "sink[1] (b).secret"} <= keys, keys
