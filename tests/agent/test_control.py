"""The control socket server on a real unix socket, with a fake supervisor."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import stat
import subprocess
import threading
import time

import pytest

from agent.client.ctl import ControlClient
from agent.server.actions import unit as action_unit
from agent.server.control import ControlServer, ControlSocketError
from bus import schema as bus_schema
from tests.agent.control_fakes import ALARMS, STATUS, FakeSupervisor


def client(srv: ControlServer) -> ControlClient:
    return ControlClient(srv.path, timeout=10)


def raw_exchange(path: str, data: bytes, timeout: float = 10.0) -> bytes:
    """Send DATA on a fresh connection and read until the server closes it."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(data)
        out = b""
        for _ in range(1000):
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
        return out


def status_line(raw: bytes) -> int:
    return int(raw.split(b"\r\n", 1)[0].split(b" ")[1])


def json_body(raw: bytes):
    return json.loads(raw.split(b"\r\n\r\n", 1)[1])


# ------------------------------------------------------------------ routes


def test_status_answers_supervisors_object(server, supervisor):
    code, body = client(server).call("GET", "/v1/status")
    assert code == 200
    assert body == STATUS
    assert supervisor.calls == [("status", {})]


def test_alarms_answers_list(server):
    assert client(server).call("GET", "/v1/alarms") == (200, ALARMS)


def test_restart_known_sink(server, supervisor):
    assert client(server).call("POST", "/v1/sinks/cdr/restart") == (200, {"restarted": "cdr"})
    assert supervisor.calls == [("restart", {"sink": "cdr"})]


def test_restart_unknown_sink_is_404(server):
    code, body = client(server).call("POST", "/v1/sinks/nope/restart")
    assert code == 404
    assert body == {"error": "no such sink: nope"}


def test_restart_sink_name_is_percent_decoded(server, supervisor):
    code, _ = client(server).call("POST", "/v1/sinks/a%2Eb/restart")
    assert code == 404
    assert supervisor.calls == [("restart", {"sink": "a.b"})]


def test_reload_ok_and_bad(server, supervisor):
    code, body = client(server).call("POST", "/v1/reload")
    assert code == 200 and body["changed"] == ["cdr"]
    supervisor.reload_problems = ["agent.toml:3: node.address: is required"]
    code, body = client(server).call("POST", "/v1/reload")
    assert code == 400
    assert body == {
        "error": "the config has problems; nothing changed",
        "problems": ["agent.toml:3: node.address: is required"],
    }


def test_reload_with_non_object_body_is_400(server, supervisor):
    code, body = client(server).call("POST", "/v1/reload", body=[1, 2])
    assert code == 400 and "JSON object" in body["error"]
    assert supervisor.calls == []
    assert client(server).call("POST", "/v1/reload", body={})[0] == 200


def test_unknown_route_is_404(server, supervisor):
    for path in ("/", "/v1", "/v1/status/extra", "/v1/sinks//restart", "/v2/status", "/v1/sinks/cdr"):
        code, body = client(server).call("GET", path)
        assert code == 404, path
        assert set(body) == {"error"}
    assert supervisor.calls == []


def test_wrong_method_is_405_with_allow(server):
    raw = raw_exchange(
        server.path, b"POST /v1/status HTTP/1.1\r\nHost: agent\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    assert status_line(raw) == 405
    assert b"\r\nAllow: GET\r\n" in raw
    code, body = client(server).call("GET", "/v1/sinks/cdr/restart")
    assert code == 405 and "POST" in body["error"]
    assert client(server).call("DELETE", "/v1/reload")[0] == 405


def test_query_string_does_not_change_routing(server):
    assert client(server).call("GET", "/v1/status?verbose=1")[0] == 200


def test_absolute_form_target_keeps_its_query(server, monkeypatch):
    monkeypatch.setattr(bus_schema, "render", lambda fmt: json.dumps(fmt))
    raw = raw_exchange(server.path, b"GET http://agent/v1/schema?format=swagger HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert status_line(raw) == 200 and json_body(raw) == "swagger"


def test_schema_renders_requested_format(server, monkeypatch):
    asked = []

    def render(fmt):
        asked.append(fmt)
        return json.dumps({"openapi": "3.1.0"} if fmt == "openapi" else {"swagger": "2.0"})

    monkeypatch.setattr(bus_schema, "render", render)
    assert client(server).call("GET", "/v1/schema") == (200, {"openapi": "3.1.0"})
    assert client(server).call("GET", "/v1/schema?format=swagger") == (200, {"swagger": "2.0"})
    code, body = client(server).call("GET", "/v1/schema?format=yaml")
    assert code == 400 and "openapi" in body["error"]
    assert asked == ["openapi", "swagger"]


def test_supervisor_exception_is_plain_500(server, supervisor, caplog):
    supervisor.explode = True
    code, body = client(server).call("GET", "/v1/status")
    assert code == 500
    assert set(body) == {"error"}
    text = json.dumps(body)
    assert "Traceback" not in text and "hunter2" not in text and "RuntimeError" not in text
    # the server keeps serving
    supervisor.explode = False
    assert client(server).call("GET", "/v1/alarms")[0] == 200


def test_supervisor_not_answering_is_503(server, supervisor, monkeypatch):
    monkeypatch.setattr(action_unit, "SUPERVISOR_TIMEOUT", 0.2)
    supervisor.hang = True
    code, body = client(server).call("GET", "/v1/status")
    assert code == 503 and "did not answer" in body["error"]


def test_keep_alive_serves_several_requests_on_one_connection(server):
    req = b"GET /v1/alarms HTTP/1.1\r\nHost: agent\r\n\r\n"
    out = raw_exchange(server.path, req + req.replace(b"Host: agent", b"Host: agent\r\nConnection: close"))
    assert out.count(b"HTTP/1.1 200 OK") == 2


# ------------------------------------------------------------------ hostile and broken clients


def test_body_too_large_is_413_and_server_still_serves(server, supervisor):
    head = b"POST /v1/reload HTTP/1.1\r\nHost: agent\r\nContent-Length: 65537\r\n\r\n"
    raw = raw_exchange(server.path, head + b"x" * 1000)
    assert status_line(raw) == 413
    assert "larger" in json_body(raw)["error"]
    assert supervisor.calls == []
    assert client(server).call("GET", "/v1/status")[0] == 200


def test_body_at_the_bound_is_accepted(server):
    body = json.dumps({"pad": "x" * (64 * 1024 - 20)}).encode()
    body += b" " * (64 * 1024 - len(body))
    assert len(body) == 64 * 1024
    head = b"POST /v1/reload HTTP/1.1\r\nHost: agent\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(body)
    assert status_line(raw_exchange(server.path, head + body)) == 200


@pytest.mark.parametrize(
    "garbage",
    [
        b"GARBAGE\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",  # a TLS hello
        b"GET /v1/status\r\n\r\n",  # HTTP/0.9
        b"GET /v1/status HTTP/1.1\r\nno colon here\r\n\r\n",
        b"GET /v1/status HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
        b"get /v1/status HTTP/1.1\r\n\r\n",
    ],
)
def test_garbage_is_400_and_server_still_serves(server, supervisor, garbage):
    raw = raw_exchange(server.path, garbage)
    assert status_line(raw) == 400
    assert set(json_body(raw)) == {"error"}
    assert b"Traceback" not in raw
    assert supervisor.calls == []
    assert client(server).call("GET", "/v1/status")[0] == 200
    assert server.counts["requests"] == 1


def test_bad_requests_of_one_kind_are_logged_once_a_minute_with_the_count_left_out(server, caplog):
    now = [1000.0]
    server._bad_log.clock = lambda: now[0]
    garbage = b"GET /v1/status HTTP/1.1\r\nContent-Length: abc\r\n\r\n"
    with caplog.at_level(logging.WARNING, logger="agent.control"):
        for _ in range(3):
            assert status_line(raw_exchange(server.path, garbage)) == 400
        now[0] += 60
        assert status_line(raw_exchange(server.path, garbage)) == 400
        time.sleep(0.2)  # the connection thread logs after answering
    lines = [r.getMessage() for r in caplog.records if "bad request" in r.getMessage()]
    assert lines == [
        "control socket: bad request (the Content-Length header is not a number)",
        "control socket: bad request (the Content-Length header is not a number) (2 more like it since the last line)",
    ], lines


def test_garbage_line_answered_without_waiting_for_end_of_head(server):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(server.path)
        s.sendall(b"this is not http\n")
        raw = s.recv(65536)
    assert status_line(raw) == 400  # for the garbage line itself: the deadline would have given 408


def test_chunked_body_is_refused(server):
    raw = raw_exchange(server.path, b"POST /v1/reload HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    assert status_line(raw) == 411


def test_head_too_large_is_431(server):
    raw = raw_exchange(server.path, b"GET /v1/status HTTP/1.1\r\n" + b"X-Pad: " + b"a" * 20000 + b"\r\n\r\n")
    assert status_line(raw) == 431


def test_silent_and_partial_clients_do_not_delay_status(server):
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    partial = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        silent.connect(server.path)
        partial.connect(server.path)
        partial.sendall(b"GET /v1/status HTTP/1.1\r\nHost: ag")
        code, body = ControlClient(server.path, timeout=4).call("GET", "/v1/status")
        assert code == 200 and body["sinks"][0]["name"] == "cdr"
        # both slow clients are still connected: no data and no EOF for them yet
        for s in (silent, partial):
            s.setblocking(False)
            with pytest.raises(BlockingIOError):
                s.recv(1)
    finally:
        silent.close()
        partial.close()


def test_client_that_sends_nothing_is_dropped_after_its_deadline(tmpdir_short, supervisor):
    srv = ControlServer(os.path.join(tmpdir_short, "c.sock"), supervisor, read_timeout=0.3, idle_timeout=0.3)
    srv.start()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(srv.path)
            assert s.recv(1) == b""  # closed by the server, without an answer
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as p:
                p.settimeout(10)
                p.connect(srv.path)
                p.sendall(b"GET /v1/status HTTP/1.1\r\n")
                raw = p.recv(65536)
                assert status_line(raw) == 408
    finally:
        srv.stop()


def test_too_many_connections_get_503(tmpdir_short, supervisor):
    srv = ControlServer(os.path.join(tmpdir_short, "c.sock"), supervisor, max_connections=2)
    srv.start()
    held = []
    try:
        for _ in range(2):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(srv.path)
            held.append(s)
        code, body = ControlClient(srv.path, timeout=10).call("GET", "/v1/status")
        assert code == 503 and "busy" in body["error"]
        held.pop().close()  # a slot frees up once the server notices the close

        def answered():
            return ControlClient(srv.path, timeout=10).call("GET", "/v1/status")[0] == 200

        deadline = time.monotonic() + 10
        while not answered():
            assert time.monotonic() < deadline, "slot never freed"
            time.sleep(0.02)
    finally:
        for s in held:
            s.close()
        srv.stop()


def test_concurrent_clients_all_answered(server):
    results: list[int] = []

    def one():
        results.append(client(server).call("GET", "/v1/status")[0])

    threads = [threading.Thread(target=one) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=15)
    assert results == [200] * 20


def test_curl_over_unix_socket(server):
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl not installed")
    out = subprocess.run(
        [curl, "-sS", "--unix-socket", server.path, "http://agent/v1/status"],
        capture_output=True,
        timeout=20,
        check=True,
    )
    assert json.loads(out.stdout) == STATUS
    out = subprocess.run(
        [
            curl,
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "POST",
            "--unix-socket",
            server.path,
            "http://agent/v1/sinks/nope/restart",
        ],
        capture_output=True,
        timeout=20,
        check=True,
    )
    assert out.stdout == b"404"


# ------------------------------------------------------------------ the socket file


def test_socket_file_mode_is_0660(server):
    st = os.lstat(server.path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660


def test_stop_unlinks_and_refuses_connections(tmpdir_short, supervisor):
    srv = ControlServer(os.path.join(tmpdir_short, "c.sock"), supervisor)
    srv.start()
    assert client(srv).call("GET", "/v1/status")[0] == 200
    srv.stop()
    assert not os.path.exists(srv.path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s, pytest.raises(FileNotFoundError):
        s.connect(srv.path)
    srv.stop()  # idempotent


def test_stale_socket_is_replaced(tmpdir_short, supervisor):
    path = os.path.join(tmpdir_short, "c.sock")
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(path)
    dead.close()  # the file stays, nobody answers: a crashed agent's leftover
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    srv = ControlServer(path, supervisor)
    srv.start()
    try:
        assert client(srv).call("GET", "/v1/status")[0] == 200
    finally:
        srv.stop()


def test_live_socket_is_refused(server, supervisor):
    other = ControlServer(server.path, FakeSupervisor())
    with pytest.raises(ControlSocketError, match="already answering"):
        other.start()
    # the first server is untouched
    assert client(server).call("GET", "/v1/alarms")[0] == 200
    assert os.path.exists(server.path)


def test_regular_file_at_path_is_refused_and_kept(tmpdir_short, supervisor):
    path = os.path.join(tmpdir_short, "c.sock")
    with open(path, "w") as fh:
        fh.write("keep me")
    with pytest.raises(ControlSocketError, match="not a socket"):
        ControlServer(path, supervisor).start()
    with open(path) as fh:
        assert fh.read() == "keep me"


def test_missing_directory_is_a_clear_error(tmpdir_short, supervisor):
    with pytest.raises(ControlSocketError, match="cannot create the control socket"):
        ControlServer(os.path.join(tmpdir_short, "nodir", "c.sock"), supervisor).start()
