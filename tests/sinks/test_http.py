"""HttpClient against a real receiver on 127.0.0.1: headers, auth, signing, every outcome, TLS;
FailureLog rate limiting."""

import base64
import logging
import shutil
import tempfile

import pytest

from common.config_types import TuningConfig
from common.vocabulary import PostOutcome
from sinks import signing
from sinks.delivery_counts import FailureLog
from sinks.http import HttpClient, Result, Timeouts
from tests.sinks.harness import make_sink
from tests.tls_files import self_signed
from tools.receiver import Receiver

BODY = b'{"node":"10.0.0.1","seq":1,"version":2,"time":1.5,"event":"eventsink_started","data":{}}'
SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


@pytest.fixture
def rx():
    with Receiver() as r:
        yield r


def client(url, tuning=None, **extra):
    return HttpClient(make_sink(url, **extra), tuning or TuningConfig())


def test_post_headers_body_and_keep_alive(rx):
    c = client(rx.url)
    for i in range(3):
        assert c.post(BODY, f"ep-{i}").outcome == PostOutcome.SUCCESS
    assert [r.headers["webhook-id"] for r in rx.requests] == ["ep-0", "ep-1", "ep-2"]
    r = rx.requests[0]
    assert r.method == "POST" and r.path == "/events" and r.body == BODY
    assert r.headers["content-type"] == "application/json"
    assert r.headers["user-agent"].startswith("eventsink-agent/")
    assert "authorization" not in r.headers and "webhook-signature" not in r.headers
    assert c.connects == 1  # one persistent connection for all three
    c.close()


def test_basic_auth_from_the_sink_and_from_the_url():
    with Receiver(username="cdr-user", password="pä:ss") as r:
        expected = "Basic " + base64.b64encode("cdr-user:pä:ss".encode()).decode()
        assert client(r.url, username="cdr-user", password="pä:ss").post(BODY, "a").outcome == PostOutcome.SUCCESS
        url = r.url.replace("http://", "http://cdr-user:p%C3%A4%3Ass@")
        c = client(url)
        assert c.post(BODY, "b").outcome == PostOutcome.SUCCESS
        assert "p%C3" not in c.url and "cdr-user" not in c.url and "cdr-user" not in repr(c)
        assert [q.headers["authorization"] for q in r.requests] == [expected, expected]
        bad = client(r.url, username="cdr-user", password="wrong").post(BODY, "c")
        assert bad.outcome == PostOutcome.HTTP_ERROR and bad.status == 401 and not r.events[2:]


def test_signed_posts_verify_and_each_attempt_is_signed_afresh(monkeypatch):
    clock = iter([1700000000.0, 1700000007.0])

    class FakeTime:
        @staticmethod
        def time():
            return next(clock)

    monkeypatch.setattr(signing, "time", FakeTime)
    with Receiver(secret=SECRET) as r:
        c = client(r.url, secret=SECRET)
        assert c.post(BODY, "id-1").outcome == PostOutcome.SUCCESS
        assert c.post(BODY, "id-1").outcome == PostOutcome.SUCCESS  # a retry: same id, new timestamp
        assert r.summary()["bad_signatures"] == 0 and [q.status for q in r.requests] == [200, 200]
        key = base64.b64decode(SECRET.removeprefix("whsec_"))
        stamps = []
        for q in r.requests:
            h = q.headers
            assert signing.verify(key, h["webhook-id"], h["webhook-timestamp"], q.body, h["webhook-signature"])
            stamps.append(h["webhook-timestamp"])
        assert stamps == ["1700000000", "1700000007"]


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_any_2xx_is_success(rx, status):
    rx.respond(status)
    result = client(rx.url).post(BODY, "x")
    assert result.outcome == PostOutcome.SUCCESS and result.status == status and result.duration > 0


@pytest.mark.parametrize("status", [400, 404, 410, 500, 502])
def test_other_statuses_are_http_errors(rx, status):
    rx.respond(status)
    result = client(rx.url).post(BODY, "x")
    assert (result.outcome, result.status, result.retry_after) == (PostOutcome.HTTP_ERROR, status, None)
    assert str(status) in result.detail


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_read_on_429_and_503(rx, status):
    rx.respond(status, {"Retry-After": "7"})
    result = client(rx.url).post(BODY, "x")
    assert result.outcome == PostOutcome.HTTP_ERROR and result.retry_after == 7.0
    rx.respond(500, {"Retry-After": "7"})
    assert client(rx.url).post(BODY, "x").retry_after is None


@pytest.mark.parametrize("value", ["\xb2", "1\xb9", "abc", "-3", "1.5"])
def test_an_unusable_retry_after_is_ignored(rx, value):
    """Headers arrive as latin-1: superscript digits pass str.isdigit() but not float(); the answer
    is still the 503 it was (not an unexpected error), only without a Retry-After."""
    rx.respond(503, {"Retry-After": value})
    result = client(rx.url).post(BODY, "x")
    assert (result.outcome, result.status, result.retry_after) == (PostOutcome.HTTP_ERROR, 503, None), result


def test_redirect_is_not_followed_and_its_location_is_redacted(rx):
    rx.respond(302, {"Location": "http://user:hunter2@127.0.0.1:9/elsewhere"})
    result = client(rx.url).post(BODY, "x")
    assert result.outcome == PostOutcome.REDIRECT and result.status == 302
    assert "127.0.0.1:9/elsewhere" in result.detail and "hunter2" not in result.detail
    assert len(rx.requests) == 1 and rx.events == []


def test_timeout_and_connection_error(rx):
    rx.respond(200, delay=2.0)
    result = client(rx.url, TuningConfig(response_timeout=0.3)).post(BODY, "x")
    assert result.outcome == PostOutcome.TIMEOUT and result.duration < 2.0
    rx.refuse()
    result = client(rx.url).post(BODY, "x")
    assert result.outcome == PostOutcome.CONNECTION_ERROR and "refused" in result.detail.lower()
    assert "0x" not in result.detail and "Connection(" not in result.detail  # no object or class prefixes


def test_a_dropped_keep_alive_connection_is_retried_once_on_a_new_one(rx):
    c = client(rx.url)
    assert c.post(BODY, "a").outcome == PostOutcome.SUCCESS
    rx._server.drop_connections()  # the server closes the idle connection
    assert c.post(BODY, "b").outcome == PostOutcome.SUCCESS
    assert [q.headers["webhook-id"] for q in rx.requests if q.status == 200] == ["a", "b"]


# ------------------------------------------------------------------ TLS


@pytest.fixture(scope="module")
def certs():
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    d = tempfile.mkdtemp(prefix="esa-tls-", dir="/tmp")
    out = {}
    for name, san in (("good", "IP:127.0.0.1"), ("wrong_host", "DNS:collector.invalid")):
        out[name] = self_signed(d, name, san=san, cn="eventsink test")
    yield out
    shutil.rmtree(d, ignore_errors=True)


def test_tls_verified_against_ca_file_and_system_store(certs):
    cert, key = certs["good"]
    with Receiver(tls_cert=cert, tls_key=key) as r:
        assert r.url.startswith("https://")
        assert client(r.url, ca_file=cert).post(BODY, "a").outcome == PostOutcome.SUCCESS
        untrusted = client(r.url).post(BODY, "b")  # the system store does not know this certificate
        assert untrusted.outcome == PostOutcome.TLS_ERROR and "certificate" in untrusted.detail.lower()
        assert client(r.url, verify_tls=False).post(BODY, "c").outcome == PostOutcome.SUCCESS
        assert [q.headers["webhook-id"] for q in r.requests] == ["a", "c"]


def test_tls_host_name_is_checked(certs):
    cert, key = certs["wrong_host"]
    with Receiver(tls_cert=cert, tls_key=key) as r:
        result = client(r.url, ca_file=cert).post(BODY, "a")
        assert result.outcome == PostOutcome.TLS_ERROR
        assert client(r.url, ca_file=cert, verify_tls=False).post(BODY, "b").outcome == PostOutcome.SUCCESS


# ------------------------------------------------------------------ failure log


def test_failure_log_rate_limits_identical_failures(caplog):
    now = [0.0]
    flog = FailureLog("cdr", every=10.0, clock=lambda: now[0])
    fail = Result(PostOutcome.HTTP_ERROR, 503, detail="HTTP 503 Service Unavailable")
    with caplog.at_level(logging.INFO, logger="support.events"):
        for i in range(5):
            now[0] = i
            flog.failure("http://127.0.0.1/x", fail, "retrying")
        flog.failure("http://127.0.0.1/x", Result(PostOutcome.TIMEOUT, detail="Read timed out"), "retrying")
        now[0] = 10.5
        flog.failure("http://127.0.0.1/x", fail, "retrying")
        flog.success("http://127.0.0.1/x")
    lines = [r.getMessage() for r in caplog.records if r.name == "support.events"]
    assert len(lines) == 4, lines
    assert "503" in lines[0] and "timeout" in lines[1] and "4 more like it" in lines[2]
    assert "succeeded after 7 failed attempts" in lines[3]


def test_timeout_override_for_one_attempt(rx):
    rx.respond(200, delay=1.0)
    result = client(rx.url).post(BODY, "x", Timeouts(connect=0.5, response=0.2))
    assert result.outcome == PostOutcome.TIMEOUT


def test_a_large_body_is_sent_without_waiting_for_100_continue(rx):
    """libcurl asks for `Expect: 100-continue` on bodies over 1 KiB and waits for it; the agent sends an
    empty Expect, so the body goes at once and the receiver never sees the header."""
    big = BODY[:-1] + b',"pad":"' + b"x" * 4096 + b'"}'
    assert client(rx.url).post(big, "big").outcome == PostOutcome.SUCCESS
    assert rx.requests[0].body == big and "expect" not in rx.requests[0].headers


def test_only_http_and_https_are_spoken(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("do not read me")
    for url in (f"file://{secret}", "gopher://127.0.0.1:1/x", "ftp://127.0.0.1:1/x"):
        result = client(url).post(BODY, "x")
        assert result.outcome == PostOutcome.CONNECTION_ERROR and "do not read me" not in result.detail, (url, result)


def test_environment_proxies_are_ignored(rx, monkeypatch):
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:1")  # nothing listens there
    assert client(rx.url).post(BODY, "x").outcome == PostOutcome.SUCCESS
