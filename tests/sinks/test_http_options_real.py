"""The HTTP options on libcurl's handles, each against a real receiver on loopback: extra headers,
the bearer token, a client certificate a TLS receiver requires (and renewed behind the same
paths), gzip bodies with a signature over the bytes received, IPv6; what makes a new client."""

import base64
import gzip
import hashlib
import hmac
import os
import shutil
import socket
import tempfile

import pytest

from common.config_types import TuningConfig
from common.vocabulary import PostOutcome
from sinks.http import HttpClient
from tests.sinks.harness import make_sink
from tests.tls_files import make_pki, new_key_and_cert
from tools.receiver import Receiver

BODY = (
    b'{"node":"10.0.0.1","seq":1,"version":2,"time":1.5,"event":"eventsink_started","data":{"a":"'
    + b"x" * 2000
    + b'"}}'
)
SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
TOKEN = "tok-3f9a1c2e7b"


def client(url, **extra):
    return HttpClient(make_sink(url, **extra), TuningConfig())


def assert_no_secret(texts, secrets):
    for text in texts:
        for secret in secrets:
            assert secret not in text, f"a secret shows in {text!r:.200}"


@pytest.fixture(scope="module")
def pki():
    d = tempfile.mkdtemp(prefix="esa-pki-", dir="/tmp")
    yield make_pki(d)
    shutil.rmtree(d, ignore_errors=True)


def test_extra_headers_and_the_bearer_token_go_on_every_post():
    with Receiver(bearer_token=TOKEN) as r:
        c = client(r.url, headers={"X-Api-Key": "key-55aa", "X-Empty": ""}, bearer_token=TOKEN)
        assert [c.post(BODY, f"h-{i}").outcome for i in range(2)] == [PostOutcome.SUCCESS, PostOutcome.SUCCESS]
        for q in r.requests:
            assert q.headers["x-api-key"] == "key-55aa" and q.headers["x-empty"] == ""
            assert q.headers["authorization"] == f"Bearer {TOKEN}"
        refused = client(r.url).post(BODY, "no-token")  # the receiver really checks the token
        assert refused.outcome == PostOutcome.HTTP_ERROR and refused.status == 401
        assert_no_secret([refused.detail, repr(c)], [TOKEN, "key-55aa"])


def test_a_receiver_that_requires_a_client_certificate(pki):
    with Receiver(tls_cert=pki.server_cert, tls_key=pki.server_key, client_ca=pki.ca_cert) as r:
        without = client(r.url, ca_file=pki.ca_cert).post(BODY, "no-cert")
        assert without.outcome == PostOutcome.TLS_ERROR, without
        c = client(r.url, ca_file=pki.ca_cert, client_cert=pki.client_cert, client_key=pki.client_key)
        assert c.post(BODY, "with-cert").outcome == PostOutcome.SUCCESS
        assert [q.headers["webhook-id"] for q in r.requests] == ["with-cert"] and r.events[0]["seq"] == 1
        assert_no_secret([without.detail, repr(c)], [pki.client_key])


def test_renewed_certificate_files_behind_the_same_paths_make_a_new_client(pki):
    d = tempfile.mkdtemp(prefix="esa-renew-", dir="/tmp")
    try:
        new_ca = new_key_and_cert(d, "new-ca", None)
        renewed = new_key_and_cert(d, "renewed", new_ca, "extendedKeyUsage=clientAuth")
        cert, key = os.path.join(d, "client.pem"), os.path.join(d, "client.key")
        shutil.copyfile(pki.client_cert, cert)  # issued by the old CA
        shutil.copyfile(pki.client_key, key)
        with Receiver(tls_cert=pki.server_cert, tls_key=pki.server_key, client_ca=new_ca[0]) as r:
            sink = make_sink(r.url, ca_file=pki.ca_cert, client_cert=cert, client_key=key)
            old = HttpClient(sink, TuningConfig())
            assert old.post(BODY, "old").outcome == PostOutcome.TLS_ERROR
            shutil.copyfile(renewed[0], cert)  # renewed: same paths, new content
            shutil.copyfile(renewed[1], key)
            assert HttpClient.settings_key(sink, TuningConfig()) != old.key  # the worker builds a new client
            assert old.post(BODY, "old-again").outcome == PostOutcome.TLS_ERROR  # a client keeps what it read
            assert HttpClient(sink, TuningConfig()).post(BODY, "new").outcome == PostOutcome.SUCCESS
            assert [q.headers["webhook-id"] for q in r.requests] == ["new"]
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_an_unreadable_client_key_is_an_error_that_does_not_name_the_key(pki):
    hidden = "/tmp/esa-no-such-dir-71f3/agent-client.key"
    with pytest.raises(ValueError) as err:
        client("https://127.0.0.1:1/events", client_cert=pki.client_cert, client_key=hidden)
    assert "client_key" in str(err.value) and hidden not in str(err.value) and "agent-client" not in repr(err.value)


def test_gzip_bodies_decompress_to_the_exact_envelope_and_the_signature_covers_the_bytes_sent():
    with Receiver(secret=SECRET) as r:
        c = client(r.url, compression="gzip", secret=SECRET)
        assert c.post(BODY, "gz-1").outcome == PostOutcome.SUCCESS
        q = r.requests[0]
        assert q.headers["content-encoding"] == "gzip" and q.headers["webhook-id"] == "gz-1"
        assert q.body != BODY and len(q.body) < len(BODY) // 4
        assert gzip.decompress(q.body) == BODY and q.content == BODY
        assert r.summary()["bad_signatures"] == 0 and r.events[0]["seq"] == 1
        key = base64.b64decode(SECRET.removeprefix("whsec_"))
        signed = f"gz-1.{q.headers['webhook-timestamp']}.".encode() + q.body
        expected = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        assert q.headers["webhook-signature"] == expected


def test_ipv6_loopback_url():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        pytest.skip("this machine has no ::1")
    with Receiver(host="::1") as r:
        assert r.url.startswith("http://[::1]:")
        assert client(r.url).post(BODY, "v6").outcome == PostOutcome.SUCCESS
        assert [q.headers["webhook-id"] for q in r.requests] == ["v6"]


@pytest.mark.parametrize(
    "change",
    [
        {"headers": {"X-Api-Key": "rotated"}},
        {"bearer_token": "rotated-token"},
        {"proxy": "http://127.0.0.1:3128"},
        {"compression": "gzip"},
        {"http_version": "2"},
    ],
)
def test_each_option_is_part_of_the_settings_key(change):
    base = dict(headers={"X-Api-Key": "k"}, bearer_token="t")
    before = HttpClient.settings_key(make_sink("http://127.0.0.1:1/", **base), TuningConfig())
    after = HttpClient.settings_key(make_sink("http://127.0.0.1:1/", **{**base, **change}), TuningConfig())
    assert before != after
