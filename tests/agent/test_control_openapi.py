"""Every answer of a real control server agrees with its OpenAPI document (docs/openapi.json).

Hypothesis sends well-formed and malformed requests to a ControlServer on a Unix
socket (with the fake supervisor of control_fakes.py): the document's paths with
valid and invalid parameters, wrong methods, unknown routes, bodies that are
empty, JSON objects, other JSON, not JSON or too large, and broken framing.
Each answer must have a status the document lists for that operation (an
unknown route: 404 or a framing error; a wrong method: 405 with `Allow`, or a
framing error), a body that is JSON, and match the schema listed for it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import urllib.parse

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from agent.server.actions.registry import openapi_document
from agent.server.control import ROUTES, ControlServer
from agent.server.openapi import COMMON_ERRORS
from tests.agent.control_fakes import FakeSupervisor

MAX_BODY = 4096  # small, so an oversized body is quick to send
DOC = openapi_document()
OPERATIONS = [(path, method.upper(), op) for path, ops in DOC["paths"].items() for method, op in ops.items()]
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]
FRAMING_ERRORS = set(COMMON_ERRORS)


class RealShapedSupervisor(FakeSupervisor):
    """The fake supervisor answering with the shapes agent/supervision/supervisor.py gives (ISO times, alarm names)."""

    def __init__(self) -> None:
        super().__init__()
        self.status["sinks"][1]["last_attempted_restart"] = "2025-11-26T19:40:00Z"
        self.alarms = [{**a, "raised_at": "2025-11-26T19:40:00Z"} for a in self.alarms]


@pytest.fixture(scope="module")
def socket_path():
    directory = tempfile.mkdtemp(prefix="esa-api-", dir="/tmp")  # AF_UNIX paths are short
    path = os.path.join(directory, "control.sock")
    with ControlServer(path, RealShapedSupervisor(), max_body=MAX_BODY):
        yield path
    shutil.rmtree(directory, ignore_errors=True)


# ---------------------------------------------------------------- requests

segment = st.text(min_size=1, max_size=20).map(lambda s: urllib.parse.quote(s, safe=""))


@st.composite
def documented_target(draw):
    """(path template, method, operation, target) for one documented operation, parameters valid or not."""
    path, method, op = draw(st.sampled_from(OPERATIONS))
    target, query = path, []
    for param in op.get("parameters", []):
        if param["in"] == "path":
            value = draw(st.one_of(st.just("cdr"), segment))
            target = target.replace("{" + param["name"] + "}", value)
        elif draw(st.booleans()):
            values = param["schema"].get("enum", [])
            value = draw(st.one_of(st.sampled_from(values), segment) if values else segment)
            query.append(f"{param['name']}={value}")
    if draw(st.booleans()):
        query.append(draw(segment) + "=" + draw(segment))  # a query key no command reads
    return path, method, op, target + ("?" + "&".join(query) if query else "")


def routed(path: str) -> list[str]:
    """The methods of the routes matching PATH (a concrete path wins over a template matching it too)."""
    bare = urllib.parse.urlsplit(path).path
    matching = [command for command, pattern in ROUTES if pattern.match(bare)]
    fewest = min((len(c.fields) for c in matching), default=0)
    return [c.method for c in matching if len(c.fields) == fewest]


@st.composite
def request(draw):
    """(expectation, raw request bytes); expectation = ("op", op) | ("wrong_method", allowed) | ("unknown",)."""
    if draw(st.integers(0, 4)) == 0:
        target = "/" + "/".join(draw(st.lists(segment, min_size=0, max_size=4)))
        method = draw(st.sampled_from(METHODS))
        allowed = routed(target)
        expect = ("unknown",) if not allowed else ("op", None) if method in allowed else ("wrong_method", allowed)
    else:
        _, method, op, target = draw(documented_target())
        expect = ("op", op)
        if draw(st.integers(0, 3)) == 0:
            method = draw(st.sampled_from([m for m in METHODS if m != method]))
            expect = ("wrong_method", routed(target))
    return expect, framed(draw, method, target)


BODIES = st.one_of(
    st.just(b""),
    st.just(b""),
    st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=8), max_size=3).map(
        lambda d: json.dumps(d).encode()
    ),
    st.sampled_from([b"[1, 2]", b"42", b'"text"', b"null", b"{", b'{"a": }']),
    st.binary(min_size=1, max_size=64),
    st.integers(MAX_BODY + 1, 2 * MAX_BODY).map(lambda n: b"x" * n),
)


def framed(draw, method: str, target: str) -> bytes:
    """METHOD TARGET as raw HTTP, well-formed or broken in one of the ways a client gets it wrong."""
    body = draw(BODIES)
    version = draw(st.sampled_from(["HTTP/1.1"] * 4 + ["HTTP/1.0", "HTTP/2.0"]))
    headers = ["Host: agent", "Connection: close"]
    breakage = draw(st.sampled_from([None, None, None, "chunked", "bad_length", "bad_header"]))
    if breakage == "chunked":
        headers.append("Transfer-Encoding: chunked")
    elif breakage == "bad_length":
        headers.append("Content-Length: twelve")
    elif breakage == "bad_header":
        headers.append("no colon here")
    if body and breakage != "bad_length":
        headers.append(f"Content-Length: {len(body)}")
    head = f"{method} {target} {version}\r\n" + "".join(h + "\r\n" for h in headers) + "\r\n"
    return head.encode("latin-1") + body


def exchange(socket_path: str, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send one request, read the answer to EOF (Connection: close); (status, headers, body)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(socket_path)
        sock.sendall(raw)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    assert int(headers["content-length"]) == len(body), "the body is as long as Content-Length says"
    return int(lines[0].split(" ")[1]), headers, body


# ---------------------------------------------------------------- checks


def assert_matches(schema: dict, body: object) -> None:
    Draft202012Validator({**schema, "components": DOC["components"]}).validate(body)


ERROR_SCHEMA = {"$ref": "#/components/schemas/Error"}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request())
def test_every_answer_is_one_the_document_lists(socket_path, case):
    (kind, *details), raw = case
    status, headers, payload = exchange(socket_path, raw)
    body = json.loads(payload)
    if kind == "op" and details[0] is not None:
        responses = details[0]["responses"]
        assert str(status) in responses, f"{status} is not documented for {details[0]['operationId']}: {body}"
        assert_matches(responses[str(status)]["content"]["application/json"]["schema"], body)
        return
    if kind == "wrong_method" and status == 405:
        assert sorted(headers["allow"].split(", ")) == sorted(set(details[0]))
    elif kind == "unknown":
        assert status == 404 or status in FRAMING_ERRORS, status
    elif kind == "wrong_method":
        assert status in FRAMING_ERRORS, status
    if status != 200:  # an unlisted path may still match a route (kind "op" with no operation at hand)
        assert_matches(ERROR_SCHEMA, body)


def test_the_served_document_is_the_committed_one(socket_path):
    status, headers, payload = exchange(socket_path, b"GET /v1/openapi.json HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert status == 200 and headers["content-type"] == "application/json"
    with open(os.path.join(os.path.dirname(__file__), "..", "..", "docs", "openapi.json"), encoding="utf-8") as fh:
        assert json.loads(payload) == json.loads(fh.read()) == DOC
