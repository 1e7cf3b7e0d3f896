"""The test receiver against real HTTP clients on 127.0.0.1."""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import hmac
import http.client
import io
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time

import pytest

from tests.tls_files import make_pki
from tools.receiver import Receiver

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def envelope(seq: int, event: str = "participant_connected", node: str = "10.44.99.2", **data) -> dict:
    return {
        "node": node,
        "seq": seq,
        "version": 2,
        "time": 1700000000.5,
        "event": event,
        "data": data or {"uuid": f"u-{seq}", "conference": "Weekly sync", "display_name": "Alice"},
    }


def post(
    rx: Receiver,
    body,
    headers: dict | None = None,
    conn: http.client.HTTPConnection | None = None,
    timeout: float = 5.0,
    path: str = "/events",
) -> tuple[int, dict, bytes]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", rx.port, timeout=timeout)
    try:
        conn.request("POST", path, body=raw, headers={"Content-Type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        if own:
            conn.close()


def basic(user: str, pw: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()}


def signed(body: bytes, wid: str = "ep-1", secret: str = SECRET, ts: int | None = None) -> dict:
    ts = int(time.time()) if ts is None else ts
    key = base64.b64decode(secret.removeprefix("whsec_"))
    sig = base64.b64encode(hmac.new(key, f"{wid}.{ts}.".encode() + body, hashlib.sha256).digest()).decode()
    return {"webhook-id": wid, "webhook-timestamp": str(ts), "webhook-signature": f"v1,{sig}"}


@pytest.fixture
def rx():
    with Receiver() as r:
        yield r


def test_records_events_with_lowercase_headers_and_url(rx):
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/events", rx.url) and rx.port > 0
    status, _, _ = post(rx, envelope(1), {"webhook-id": "ep-1", "X-Custom": "yes"})
    assert status == 200
    assert rx.events == [envelope(1)]
    req = rx.requests[0]
    assert (req.method, req.path, req.status) == ("POST", "/events", 200)
    assert req.headers["x-custom"] == "yes" and req.headers["webhook-id"] == "ep-1"
    assert json.loads(req.body) == envelope(1)
    assert isinstance(req.t, float) and req.t <= time.monotonic()
    assert rx.problems == []


def test_keep_alive_serves_many_requests_on_one_connection(rx):
    conn = http.client.HTTPConnection("127.0.0.1", rx.port, timeout=5)
    try:
        for seq in range(1, 6):
            assert post(rx, envelope(seq), conn=conn)[0] == 200
        local = conn.sock.getsockname()
    finally:
        conn.close()
    assert [e["seq"] for e in rx.events] == [1, 2, 3, 4, 5]
    assert local[1] > 0 and rx.problems == []


def test_basic_auth_accepts_right_and_refuses_wrong_or_missing():
    with Receiver(username="cdr-user", password="S3cret-pass") as rx:
        assert post(rx, envelope(1), basic("cdr-user", "S3cret-pass"))[0] == 200
        assert post(rx, envelope(2), basic("cdr-user", "Bad-Pass-9"))[0] == 401
        assert post(rx, envelope(3), basic("CDR-user", "S3cret-pass"))[0] == 401  # case-sensitive
        status, headers, _ = post(rx, envelope(4))
        assert status == 401 and "basic" in headers.get("www-authenticate", "").lower()
        assert [e["seq"] for e in rx.events] == [1]
        assert [r.status for r in rx.requests] == [200, 401, 401, 401]
        assert len(rx.problems) == 3 and rx.summary()["auth_failures"] == 3
        assert not any("S3cret-pass" in p or "Bad-Pass-9" in p for p in rx.problems)


def test_signature_checked_with_standard_webhooks_hmac():
    with Receiver(secret=SECRET) as rx:
        good = json.dumps(envelope(1)).encode()
        assert post(rx, good, signed(good, "ep-1"))[0] == 200
        tampered = json.dumps(envelope(2)).encode()
        headers = signed(json.dumps(envelope(3)).encode(), "ep-2")  # signature of another body
        assert post(rx, tampered, headers)[0] == 401
        other_key = "whsec_" + base64.b64encode(b"another key entirely, 32 bytes!!").decode()
        assert post(rx, tampered, signed(tampered, "ep-3", secret=other_key))[0] == 401
        assert post(rx, tampered)[0] == 401  # unsigned
        # several signatures (key rotation): one valid is enough
        body = json.dumps(envelope(2)).encode()
        h = signed(body, "ep-4")
        h["webhook-signature"] = "v1,Zm9v " + h["webhook-signature"]
        assert post(rx, body, h)[0] == 200
        assert [e["seq"] for e in rx.events] == [1, 2]
        assert rx.summary()["bad_signatures"] == 3 and len(rx.problems) == 3
        assert all(SECRET not in p for p in rx.problems)


def test_signature_headers_that_are_not_ascii_are_bad_signatures_not_receiver_errors():
    with Receiver(secret=SECRET) as rx:
        body = json.dumps(envelope(1)).encode()
        h = signed(body, "ep-1")
        assert post(rx, body, {**h, "webhook-signature": h["webhook-signature"] + "\u00e9"})[0] == 401
        assert post(rx, body, {**h, "webhook-timestamp": "\u00b2"})[0] == 401  # str.isdigit() says yes, int() no
        assert post(rx, body, h)[0] == 200
        assert rx.summary()["bad_signatures"] == 2
        assert rx.problems == ["POST /events: 401 bad webhook-signature"] * 2


def test_event_names_lists_the_events_received_in_order_bulk_unpacked(rx):
    """What the e2e and console tests wait on (`rx.event_names()`): refused requests add nothing."""
    assert rx.event_names() == []
    assert post(rx, envelope(1, "conference_started"))[0] == 200
    assert post(rx, b"not json")[0] == 400
    inner = [envelope(2, "participant_connected"), envelope(3, "conference_ended")]
    assert post(rx, {"node": "10.44.99.2", "seq": 0, "version": 2, "event": "eventsink_bulk", "data": inner})[0] == 200
    assert rx.event_names() == ["conference_started", "participant_connected", "conference_ended"]


def test_non_json_body_is_400_and_not_an_event(rx):
    assert post(rx, b"not json at all")[0] == 400
    assert post(rx, b"[1, 2]")[0] == 400
    assert post(rx, {"event": "eventsink_bulk", "seq": 0, "data": {"not": "a list"}})[0] == 400
    assert rx.events == [] and rx.summary()["bad_requests"] == 3
    assert [r.status for r in rx.requests] == [400, 400, 400]


def test_bulk_envelope_is_unpacked_in_order_with_inner_seq(rx):
    inner = [envelope(1, "eventsink_started"), envelope(2), envelope(3, "participant_updated")]
    for e in inner[:1]:
        e["data"] = {}
    bulk = {"node": "127.0.0.1", "seq": 0, "version": 2, "time": 1700000001.0, "event": "eventsink_bulk", "data": inner}
    assert post(rx, bulk, {"webhook-id": "ep-1+3"})[0] == 200
    assert rx.events == inner
    assert rx.summary()["by_event"] == {"eventsink_started": 1, "participant_connected": 1, "participant_updated": 1}
    assert rx.problems == []


def test_seq_gap_reset_out_of_order_per_node(rx):
    for seq in (1, 2, 3, 6):
        post(rx, envelope(seq))
    post(rx, envelope(1, node="10.44.99.3"))  # another node: its own counter, first seq 1 is no reset
    post(rx, envelope(5))  # late
    post(rx, envelope(1, "eventsink_started"))  # publisher restarted
    post(rx, envelope(2))
    s = rx.summary()
    assert (s["gaps"], s["missing"], s["resets"], s["out_of_order"], s["duplicates"]) == (1, 2, 1, 1, 0)
    assert any("gap" in p and "4-5" in p for p in rx.problems)
    assert any("reset" in p for p in rx.problems)
    assert len(rx.problems) == 3


def test_repeated_webhook_id_is_a_duplicate_but_still_accepted(rx):
    assert post(rx, envelope(1), {"webhook-id": "ep-1"})[0] == 200
    assert post(rx, envelope(2), {"webhook-id": "ep-2"})[0] == 200
    assert post(rx, envelope(2), {"webhook-id": "ep-2"})[0] == 200  # a retry whose first answer was lost
    assert post(rx, envelope(3), {"webhook-id": "ep-3"})[0] == 200
    s = rx.summary()
    assert s["duplicates"] == 1 and s["out_of_order"] == 0 and s["gaps"] == 0
    assert len(rx.events) == 4 and rx.problems == ["duplicate webhook-id ep-2"]


def test_failed_answer_then_retry_is_not_a_duplicate(rx):
    rx.respond(503, {"Retry-After": "7"})
    status, headers, _ = post(rx, envelope(1), {"webhook-id": "ep-1"})
    assert status == 503 and headers["retry-after"] == "7"
    rx.respond(200)
    assert post(rx, envelope(1), {"webhook-id": "ep-1"})[0] == 200
    assert rx.events == [envelope(1)] and rx.problems == []
    assert [r.status for r in rx.requests] == [503, 200]


def test_respond_redirect_headers_and_statuses(rx):
    rx.respond(302, {"Location": "http://127.0.0.1:1/elsewhere"})
    status, headers, _ = post(rx, envelope(1))
    assert status == 302 and headers["location"] == "http://127.0.0.1:1/elsewhere"
    rx.respond(204)
    assert post(rx, envelope(1))[0] == 204
    assert [e["seq"] for e in rx.events] == [1]  # only the 2xx counted


def test_respond_delay_holds_the_answer(rx):
    rx.respond(200, delay=3.0)
    with pytest.raises((socket.timeout, TimeoutError)):
        post(rx, envelope(1), timeout=0.3)
    rx.respond(200, delay=0.2)
    start = time.monotonic()
    assert post(rx, envelope(2))[0] == 200
    assert time.monotonic() - start >= 0.2  # lower bound: the delay happened


def test_script_answers_by_request_index(rx):
    rx.script(lambda i: (500, None, 0.0) if i % 2 == 0 else (200, {"X-Index": str(i)}, 0.0))
    answers = [post(rx, envelope(seq)) for seq in (1, 1, 2, 2)]
    assert [a[0] for a in answers] == [500, 200, 500, 200]
    assert [a[1].get("x-index") for a in answers] == [None, "1", None, "3"]
    assert [e["seq"] for e in rx.events] == [1, 2]
    rx.respond(201)  # respond() replaces the script
    assert post(rx, envelope(3))[0] == 201


def test_refuse_then_accept_on_the_same_port(rx):
    conn = http.client.HTTPConnection("127.0.0.1", rx.port, timeout=5)
    assert post(rx, envelope(1), conn=conn)[0] == 200
    port = rx.port
    rx.refuse()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    with pytest.raises((OSError, http.client.HTTPException)):  # the kept-alive connection was dropped too
        post(rx, envelope(2), conn=conn)
    conn.close()
    rx.accept()
    assert rx.port == port and rx.url.endswith(f":{port}/events")
    assert post(rx, envelope(2))[0] == 200
    assert [e["seq"] for e in rx.events] == [1, 2]


def test_refuse_during_a_delay_drops_the_request_unrecorded(rx):
    rx.respond(200, delay=5.0)
    errors = []

    def client():
        try:
            post(rx, envelope(1), timeout=10)
        except (OSError, http.client.HTTPException) as exc:
            errors.append(exc)

    t = threading.Thread(target=client)
    t.start()
    deadline = time.monotonic() + 5
    while rx._index == 0 and time.monotonic() < deadline:  # the request is in (index counted on arrival)
        time.sleep(0.01)
    rx.refuse()
    t.join(10)
    assert not t.is_alive() and len(errors) == 1
    assert rx.events == [] and rx.requests == []


def test_wait_for_returns_false_at_its_deadline_and_true_when_met(rx):
    start = time.monotonic()
    assert rx.wait_for(lambda r: len(r.events) >= 1, timeout=0.2) is False
    assert time.monotonic() - start >= 0.2
    assert rx.wait_events(1, timeout=0.1) is False
    threading.Timer(0.1, lambda: post(rx, envelope(1))).start()
    assert rx.wait_events(1, timeout=10) is True


def test_printed_lines_are_one_per_event_with_flags():
    out = io.StringIO()
    with Receiver(out=out) as rx:
        post(
            rx,
            {
                "node": "10.44.99.2",
                "seq": 1,
                "version": 2,
                "time": 1.0,
                "event": "conference_started",
                "data": {"name": "Weekly sync", "service_type": "conference"},
            },
        )
        post(rx, envelope(3))
        post(rx, b"garbage")
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3} #1 seq=1 conference_started Weekly sync.*", lines[0])
    assert re.fullmatch(
        r"\d\d:\d\d:\d\d\.\d{3} #2 seq=3 participant_connected Weekly sync \(Alice / u-3\) \[gap: missing 2\]", lines[1]
    )
    assert "400" in lines[2]


def make_cert(directory: str) -> tuple[str, str]:
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            key,
            "-out",
            cert,
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_tls_receiver_serves_https(tmp_path):
    cert, key = make_cert(str(tmp_path))
    with Receiver(tls_cert=cert, tls_key=key) as rx:
        assert rx.url.startswith("https://127.0.0.1:")
        ctx = ssl.create_default_context(cafile=cert)
        conn = http.client.HTTPSConnection("127.0.0.1", rx.port, context=ctx, timeout=5)
        try:
            assert post(rx, envelope(1), conn=conn)[0] == 200
        finally:
            conn.close()
        with pytest.raises(ssl.SSLError):  # an unknown CA is refused by a verifying client
            bad = http.client.HTTPSConnection("127.0.0.1", rx.port, context=ssl.create_default_context(), timeout=5)
            try:
                post(rx, envelope(2), conn=bad)
            finally:
                bad.close()
        assert [e["seq"] for e in rx.events] == [1]


def test_receive_command_prints_banner_events_and_summary_without_secrets():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = (
        "import argparse, sys; from tools.receive_command import main; "
        f"sys.exit(main(argparse.Namespace(listen='127.0.0.1:{port}', username='ops', "
        f"password='Pw-Top-Secret', secret={SECRET!r})))"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        banner = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}/events" in banner
        body = json.dumps(envelope(1)).encode()
        rx_port = Receiver(port=port)  # only for post()'s port
        assert post(rx_port, body, {**basic("ops", "Pw-Top-Secret"), **signed(body)})[0] == 200
        assert post(rx_port, body, basic("ops", "nope"))[0] == 401
        line = proc.stdout.readline()
        assert "#1 seq=1 participant_connected" in line
        assert "401" in proc.stdout.readline()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "received 1 events in 2 requests" in out and "auth failures 1" in out
    everything = banner + line + out + err
    assert "Pw-Top-Secret" not in everything and SECRET not in everything and SECRET[6:] not in everything
    assert "Traceback" not in err


def test_receive_command_reports_a_busy_port_in_one_line():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        from tools.receive_command import main

        code = main(argparse.Namespace(listen=f"127.0.0.1:{port}", username=None, password=None, secret=None))
    assert code == 1


# ------------------------------------------------------------ HTTP options: gzip, bearer token, client certificates


def test_gzip_body_is_decompressed_and_its_signature_checked_over_the_bytes_received():
    with Receiver(secret=SECRET) as rx:
        packed = gzip.compress(json.dumps(envelope(1)).encode())
        assert post(rx, packed, {"Content-Encoding": "gzip", **signed(packed, "ep-1")})[0] == 200
        assert rx.events == [envelope(1)] and rx.requests[0].body == packed and rx.requests[0].json() == envelope(1)
        # a signature over the uncompressed JSON is not one over what was sent
        plain = json.dumps(envelope(2)).encode()
        assert post(rx, gzip.compress(plain), {"Content-Encoding": "gzip", **signed(plain, "ep-2")})[0] == 401
        assert rx.summary()["bad_signatures"] == 1


def test_bad_gzip_is_400_and_an_unknown_encoding_415(rx):
    assert post(rx, b"not gzip at all", {"Content-Encoding": "gzip"})[0] == 400
    status, headers, _ = post(rx, b"xx", {"Content-Encoding": "br"})
    assert status == 415 and headers["accept-encoding"] == "gzip"
    assert rx.events == [] and rx.summary()["bad_requests"] == 2


def test_gzip_that_unpacks_past_the_body_limit_is_refused(rx, monkeypatch):
    monkeypatch.setattr("tools.receiver.MAX_BODY", 1000)
    assert post(rx, gzip.compress(b" " * 5000), {"Content-Encoding": "gzip"})[0] == 400


def test_bearer_token_is_required_when_given():
    with Receiver(bearer_token="tok-123") as rx:
        assert post(rx, envelope(1), {"Authorization": "Bearer tok-123"})[0] == 200
        assert post(rx, envelope(2), {"Authorization": "Bearer tok-999"})[0] == 401
        assert post(rx, envelope(3), basic("u", "tok-123"))[0] == 401
        assert post(rx, envelope(4))[0] == 401
        assert [e["seq"] for e in rx.events] == [1] and rx.summary()["auth_failures"] == 3
        assert not any("tok-123" in p for p in rx.problems)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(str(tmp_path_factory.mktemp("pki")))


def tls_post(rx: Receiver, pki, seq: int, client_cert: bool) -> int:
    ctx = ssl.create_default_context(cafile=pki.ca_cert)
    if client_cert:
        ctx.load_cert_chain(pki.client_cert, pki.client_key)
    conn = http.client.HTTPSConnection("127.0.0.1", rx.port, context=ctx, timeout=5)
    try:
        return post(rx, envelope(seq), conn=conn)[0]
    finally:
        conn.close()


def test_client_ca_requires_a_client_certificate_at_the_handshake(pki):
    with Receiver(tls_cert=pki.server_cert, tls_key=pki.server_key, client_ca=pki.ca_cert) as rx:
        assert tls_post(rx, pki, 1, client_cert=True) == 200
        with pytest.raises((ssl.SSLError, ConnectionError)):  # TLS 1.3: the refusal may come with the first read
            tls_post(rx, pki, 2, client_cert=False)
        assert rx.wait_for(lambda r: r.summary()["tls_refused"] == 1, 5), rx.problems
        assert [e["seq"] for e in rx.events] == [1] and len(rx.requests) == 1


def test_client_ca_without_tls_is_refused():
    with pytest.raises(ValueError, match="TLS"):
        Receiver(client_ca="/etc/ssl/certs/ca-certificates.crt")


def start_receive(*args: str) -> tuple[subprocess.Popen, int, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "receive", "--listen", f"127.0.0.1:{port}", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return proc, port, proc.stdout.readline()


def stop_receive(proc: subprocess.Popen) -> tuple[str, str]:
    proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0 and "Traceback" not in err, err
    return out, err


def test_receive_reads_password_and_secret_from_files_kept_out_of_ps(tmp_path):
    (tmp_path / "pw").write_text("Pw-From-File\n")
    (tmp_path / "secret").write_text(SECRET + "\n")
    proc, port, banner = start_receive(
        "--username", "ops", "--password-file", str(tmp_path / "pw"), "--secret-file", str(tmp_path / "secret")
    )
    try:
        with open(f"/proc/{proc.pid}/cmdline", "rb") as fh:
            cmdline = fh.read().decode()
        assert "Pw-From-File" not in cmdline and SECRET[6:] not in cmdline
        assert "Basic auth as 'ops'" in banner and "webhook signatures" in banner, banner
        body = json.dumps(envelope(1)).encode()
        target = Receiver(port=port)  # only for post()'s port
        assert post(target, body, {**basic("ops", "Pw-From-File"), **signed(body)})[0] == 200
        assert (
            post(target, body, {**basic("ops", "Pw-From-File"), **signed(body, secret=SECRET[:-4] + "AAA=")})[0] == 401
        )
    finally:
        out, err = stop_receive(proc)
    assert "received 1 events in 2 requests" in out and "bad signatures 1" in out
    assert "Pw-From-File" not in out + err and SECRET[6:] not in out + err


def test_receive_over_tls_with_client_ca_and_bearer_token_file(tmp_path, pki):
    (tmp_path / "token").write_text("tok-from-file\n# next line ignored\n")
    proc, port, banner = start_receive(
        "--tls-cert",
        pki.server_cert,
        "--tls-key",
        pki.server_key,
        "--client-ca",
        pki.ca_cert,
        "--bearer-token-file",
        str(tmp_path / "token"),
    )
    try:
        assert f"https://127.0.0.1:{port}/events" in banner and "client certificates" in banner and "bearer" in banner
        ctx = ssl.create_default_context(cafile=pki.ca_cert)
        ctx.load_cert_chain(pki.client_cert, pki.client_key)
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=5)
        try:
            target = Receiver(port=port)
            assert post(target, envelope(1), {"Authorization": "Bearer tok-from-file"}, conn=conn)[0] == 200
        finally:
            conn.close()
    finally:
        out, _ = stop_receive(proc)
    assert "received 1 events in 1 requests" in out and "tok-from-file" not in out


@pytest.mark.parametrize(
    "args, words",
    [
        (["--client-ca", "/x.pem"], "need --tls-cert"),
        (["--username", "u", "--bearer-token-file", "/x"], "not both"),
        (["--password", "p", "--password-file", "/x", "--username", "u"], "not both"),
        (["--secret-file", "/nonexistent/secret"], "cannot read"),
        (["--tls-cert", "/nonexistent/cert.pem"], "TLS files"),
    ],
)
def test_receive_option_mistakes_are_one_line_exit_2(args, words):
    out = subprocess.run(
        [sys.executable, "-m", "agent", "receive", "--listen", "127.0.0.1:0", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], out.stderr
