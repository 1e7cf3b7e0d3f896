"""End to end: signed deliveries, TLS, the control surface and secrets, on a real agent.

- Signatures are checked with the `standardwebhooks` library (a verifier nobody here
  wrote), also on a retry: same webhook-id, fresh timestamp, still valid.
- TLS against a real HTTPS receiver with a self-signed certificate made by the
  openssl CLI: refused with verify_tls = true (tls_error, reason logged), accepted
  with verify_tls = false (warned at start) and with ca_file; a wrong host name is refused.
- The control socket: mode 0660 in a 0750 directory, no TCP listener but metrics,
  a second agent on the same dirs exits non-zero with one line, silent and garbage
  clients never hold up another client.
- Secrets (password, signing secret and its key, URL password) appear in no status,
  metric, log line or command line, through deliveries and failures.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from bus import schema
from tests.e2e.harness import REPO, Agent, free_port, publish, render_toml, sink
from tests.helpers import wait_until
from tests.tls_files import self_signed

pytestmark = pytest.mark.e2e

SECRET_KEY = b"eventsink-agent e2e signing key!"  # 32 bytes
SECRET = "whsec_" + base64.b64encode(SECRET_KEY).decode()
CONF = {"name": "Weekly sync", "service_type": "conference"}


def participant(uuid: str, **extra) -> dict:
    return {"uuid": uuid, "conference": "Weekly sync", "display_name": f"P {uuid}", **extra}


def verify(request) -> dict:
    """The request's body, verified by standardwebhooks (raises WebhookVerificationError)."""
    return Webhook(SECRET).verify(request.body, request.headers)


# ------------------------------------------------------------ signatures


def test_signed_posts_verify_with_standardwebhooks(make_agent, make_receiver):
    rx, rx_bulk, rx_plain = make_receiver(), make_receiver(), make_receiver()
    agent = make_agent(
        [
            sink("signed", rx.url, secret=SECRET),
            sink("bulk", rx_bulk.url, secret=SECRET, bulk=True, bulk_max_events=3, bulk_interval=0.2),
            sink("plain", rx_plain.url),
        ]
    )
    publish(
        agent,
        [
            ("conference_started", CONF),
            ("participant_connected", participant("p1", vendor="Ünïcode ✓")),
            ("conference_ended", CONF),
        ],
    )
    assert rx.wait_events(4) and rx_bulk.wait_events(4) and rx_plain.wait_events(4)

    now = time.time()
    for r in rx.requests + rx_bulk.requests:
        body = verify(r)
        assert body == json.loads(r.body)
        assert abs(int(r.headers["webhook-timestamp"]) - now) < 300
        assert r.headers["webhook-signature"].startswith("v1,")
        # the verifier is not a rubber stamp: another body, id or key fails
        with pytest.raises(WebhookVerificationError):
            Webhook(SECRET).verify(r.body + b" ", r.headers)
        with pytest.raises(WebhookVerificationError):
            Webhook(SECRET).verify(r.body, {**r.headers, "webhook-id": r.headers["webhook-id"] + "x"})
        with pytest.raises(WebhookVerificationError):
            Webhook("whsec_" + base64.b64encode(b"another key of 32 bytes length!!").decode()).verify(r.body, r.headers)
    assert any(json.loads(r.body)["event"] == "eventsink_bulk" for r in rx_bulk.requests)
    for r in rx_plain.requests:
        assert r.headers["webhook-id"]
        assert "webhook-signature" not in r.headers and "webhook-timestamp" not in r.headers


def test_a_retry_keeps_its_webhook_id_and_is_signed_afresh(make_agent, make_receiver):
    rx = make_receiver()
    agent = make_agent([sink("signed", rx.url, secret=SECRET)], tuning={"initial_retry_backoff": 1.2})
    assert rx.wait_events(1)  # eventsink_started
    rx.respond(503)
    publish(agent, [("conference_started", {"name": "retried"})])
    assert rx.wait_for(lambda r: any(q.status == 503 for q in r.requests), timeout=10)
    rx.respond(200)
    assert rx.wait_for(lambda r: any(e["event"] == "conference_started" for e in r.events), timeout=15)

    attempts = [r for r in rx.requests if b'"conference_started"' in r.body]
    assert len(attempts) >= 2 and attempts[0].status == 503 and attempts[-1].status == 200
    assert len({r.headers["webhook-id"] for r in attempts}) == 1
    assert len({r.body for r in attempts}) == 1  # the same envelope (same seq) every time
    stamps = [int(r.headers["webhook-timestamp"]) for r in attempts]
    assert stamps == sorted(stamps) and stamps[-1] > stamps[0]  # signed again, later
    assert len({r.headers["webhook-signature"] for r in attempts}) == len(set(stamps))
    for r in attempts:
        assert verify(r)["data"] == {"name": "retried"}
    assert agent.metric("eventsink_post_attempts_total", sink="signed", outcome="http_error") >= 1


# ------------------------------------------------------------ TLS


@pytest.fixture(scope="module")
def certs():
    directory = tempfile.mkdtemp(prefix="esa-tls-", dir="/tmp")
    good = self_signed(directory, "localhost", san="IP:127.0.0.1,DNS:localhost")
    wrong = self_signed(directory, "elsewhere", san="DNS:elsewhere.example")
    yield good, wrong
    for f in os.listdir(directory):
        os.unlink(os.path.join(directory, f))
    os.rmdir(directory)


def test_tls_verification(make_agent, make_receiver, certs):
    (cert, key), (wrong_cert, wrong_key) = certs
    strict, insecure, pinned = (make_receiver(tls_cert=cert, tls_key=key) for _ in range(3))
    wrong_host = make_receiver(tls_cert=wrong_cert, tls_key=wrong_key)
    assert strict.url.startswith("https://127.0.0.1:")
    agent = make_agent(
        [
            sink("strict", strict.url, verify_tls=True),
            sink("insecure", insecure.url, verify_tls=False),
            sink("pinned", pinned.url, verify_tls=True, ca_file=cert),
            sink("wronghost", wrong_host.url, verify_tls=True, ca_file=wrong_cert),
        ],
        tuning={"initial_retry_backoff": 5},
    )
    publish(agent, [("conference_started", CONF)])

    # accepted: verify_tls = false, and verify_tls = true with the sink's ca_file
    assert insecure.wait_events(2) and pinned.wait_events(2)
    assert [e["event"] for e in pinned.events] == ["eventsink_started", "conference_started"]

    # refused: the system store does not know a self-signed cert; a cert for another host name
    for name in ("strict", "wronghost"):
        wait_until(
            lambda n=name: agent.metric("eventsink_post_attempts_total", sink=n, outcome="tls_error") >= 1,
            what=f"a tls_error for {name}",
        )
        assert agent.metric("eventsink_post_attempts_total", sink=name, outcome="success") == 0
        assert agent.sink_status(name)["failures"] >= 1
    assert strict.requests == [] and wrong_host.requests == []  # never got past the handshake
    log = agent.log().splitlines()
    for name in ("strict", "wronghost"):
        reasons = [ln for ln in log if "support.events" in ln and f"sink {name}" in ln]
        assert reasons, f"no support.events line for {name}:\n" + "\n".join(log[-30:])
        assert any("certificate" in ln.lower() or "ssl" in ln.lower() or "tls" in ln.lower() for ln in reasons), reasons
    warned = [ln for ln in log if "WARNING" in ln and "verify_tls" in ln]
    assert warned and all("sink[1]" in ln or "insecure" in ln for ln in warned), warned
    assert agent.metric("eventsink_post_attempts_total", sink="insecure", outcome="tls_error") == 0


# ------------------------------------------------------------ the control surface


def listening_tcp_ports(pid: int) -> set[int]:
    """TCP ports process PID listens on (from /proc: its socket inodes in LISTEN state)."""
    inodes = set()
    fd_dir = f"/proc/{pid}/fd"
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as fh:
                rows = fh.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if cols[3] == "0A" and cols[9] in inodes:  # 0A = LISTEN
                ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return ports


def test_control_socket_permissions_and_no_tcp_listener(make_agent, receiver):
    agent = make_agent([sink("cdr", receiver.url)])
    sock = os.stat(agent.control_socket)
    assert stat.S_ISSOCK(sock.st_mode)
    assert stat.S_IMODE(sock.st_mode) == 0o660
    run_dir = os.stat(os.path.dirname(agent.control_socket))
    assert stat.S_IMODE(run_dir.st_mode) == 0o750
    assert (sock.st_uid, sock.st_gid) == (os.getuid(), os.getgid())
    assert listening_tcp_ports(agent.proc.pid) == {agent.metrics_port}
    for child in agent.child_pids():
        assert listening_tcp_ports(child) == set()
    # the schema is served on the control socket too, the same document the CLI prints
    status, doc = agent.client().call("GET", "/v1/schema?format=swagger")
    assert status == 200 and doc == schema.document("swagger")
    status, doc = agent.client().call("GET", "/v1/schema")
    assert status == 200 and doc["openapi"].startswith("3.1")


def run_second_agent(first: Agent, **agent_overrides) -> subprocess.CompletedProcess:
    base = tempfile.mkdtemp(prefix="esa-", dir="/tmp")
    settings = {**first.agent, "metrics_listen": f"127.0.0.1:{free_port()}", **agent_overrides}
    path = os.path.join(base, "agent.toml")
    with open(path, "w") as fh:
        fh.write(render_toml(first.node, settings, first.tuning, first.sinks))
    try:
        return subprocess.run(
            [sys.executable, "-m", "agent", "run", "--config", path],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        os.unlink(path)
        os.rmdir(base)


def test_second_agent_on_the_same_dirs_exits_with_one_line(make_agent, receiver):
    agent = make_agent([sink("cdr", receiver.url)])
    before = agent.status()
    other = tempfile.mkdtemp(prefix="esa-", dir="/tmp")
    try:
        for overrides in ({}, {"state_dir": os.path.join(other, "state")}, {"runtime_dir": os.path.join(other, "run")}):
            out = run_second_agent(agent, **overrides)
            lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
            assert out.returncode != 0, (overrides, out.stderr)
            assert len(lines) == 1, (overrides, out.stderr)
            assert "Traceback" not in out.stderr and out.stdout.strip() == ""
    finally:
        shutil.rmtree(other, ignore_errors=True)
    # the first agent still owns its sockets and works
    assert agent.proc.poll() is None
    assert agent.status()["sinks"][0]["pid"] == before["sinks"][0]["pid"]
    publish(agent, [("conference_started", {"name": "still here"})])
    assert receiver.wait_for(lambda r: any(e["data"].get("name") == "still here" for e in r.events))


def test_silent_and_garbage_clients_do_not_hold_up_status(make_agent, receiver):
    agent = make_agent([sink("cdr", receiver.url)])
    stalled = []
    try:
        for payload in (
            b"",
            b"\x00\xff\xfe garbage \r\n\r\n",
            b"GET /v1/status HTTP/1.1\r\nHost: a",
            b"POST /v1/reload HTTP/1.1\r\nContent-Length: 1000000\r\n\r\n{",
            b"G",
        ):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(agent.control_socket)
            if payload:
                s.sendall(payload)
            stalled.append(s)
        # with every one of them still connected, another client gets its answer
        for _ in range(3):
            status = wait_until(agent.status, timeout=10, what="status while other clients stall")
            assert status["sinks"][0]["name"] == "cdr"
        assert agent.alarms() == []
    finally:
        for s in stalled:
            s.close()
    assert agent.proc.poll() is None
    assert "Traceback" not in agent.log()


# ------------------------------------------------------------ secrets


def test_secrets_never_show(make_agent, make_receiver):
    password, url_password = "pw-Zq81-topsecret", "urlpass"
    key_b64 = SECRET.removeprefix("whsec_")
    rx_auth = make_receiver(username="cdr", password=password)
    rx_url = make_receiver(username="user", password=url_password)
    port = rx_url.port
    dead = free_port()

    def flaky(index: int):  # some failures: 500, then a redirect whose Location carries the credentials
        if index == 1:
            return 500, None, 0.0
        if index == 2:
            return 302, {"Location": f"http://user:{url_password}@127.0.0.1:{port}/moved"}, 0.0
        return 200, None, 0.0

    rx_url.script(flaky)
    agent = make_agent(
        [
            sink("auth", rx_auth.url, username="cdr", password=password, secret=SECRET),
            sink("urlcreds", f"http://user:{url_password}@127.0.0.1:{port}/events", secret=SECRET),
            sink(
                "dead",
                f"http://user:{url_password}@127.0.0.1:{dead}/events",
                username="x",
                password=password,
                secret=SECRET,
            ),
        ],
        tuning={"initial_retry_backoff": 0.3, "max_retry_backoff": 60},
    )
    publish(
        agent, [("conference_started", CONF), ("participant_connected", participant("p1")), ("conference_ended", CONF)]
    )
    assert rx_auth.wait_events(4) and rx_url.wait_events(4, timeout=20)
    assert not rx_auth.problems and rx_auth.requests[0].headers["authorization"].startswith("Basic ")
    for outcome, name in (("http_error", "urlcreds"), ("redirect", "urlcreds"), ("connection_error", "dead")):
        wait_until(
            lambda o=outcome, n=name: agent.metric("eventsink_post_attempts_total", sink=n, outcome=o) >= 1,
            what=f"{outcome} on {name}",
        )
    wait_until(lambda: agent.sink_status("dead")["failures"] >= 2, what="repeated failures")

    status = agent.status()
    urls = {s["name"]: s["url"] for s in status["sinks"]}
    assert urls["urlcreds"] == f"http://127.0.0.1:{port}/events" and urls["dead"] == f"http://127.0.0.1:{dead}/events"
    seen = agent.outward_texts(status)
    assert agent.stop() == 0
    seen["log"] = agent.log()
    assert "sink auth" in seen["log"] or "auth" in seen["log"]  # the log is there to search
    assert "support.events" in seen["log"]
    for where, text in seen.items():
        assert text, where
        for secret in (password, SECRET, key_b64, url_password, SECRET_KEY.decode()):
            assert secret not in text, f"{secret!r} appears in {where}"
