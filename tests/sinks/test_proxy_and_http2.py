"""A sink's proxy and HTTP version against real Debian servers on loopback: tinyproxy forwarding
http and tunnelling https (CONNECT) with Basic credentials; nginx speaking HTTP/2 over TLS (ALPN)
and in cleartext (prior knowledge), POSTs under way multiplexed on one connection."""

import shutil
import tempfile
import time

import pytest

from common.config_types import TuningConfig
from common.vocabulary import PostOutcome
from sinks.http import HttpClient
from tests.bench.servers import free_port
from tests.sinks.harness import make_sink
from tests.sinks.real_servers import H2Nginx, Tinyproxy
from tests.tls_files import make_pki
from tools.receiver import Receiver

BODY = b'{"node":"10.0.0.1","seq":1,"version":2,"time":1.5,"event":"eventsink_started","data":{}}'
USER, PASSWORD = "agent", "pr0xy-s3cret"


@pytest.fixture(scope="module")
def pki():
    d = tempfile.mkdtemp(prefix="esa-pki-", dir="/tmp")
    yield make_pki(d)
    shutil.rmtree(d, ignore_errors=True)


def client(url, **extra):
    return HttpClient(make_sink(url, **extra), TuningConfig(connection_timeout=5, response_timeout=5))


def post_many(c: HttpClient, n: int, timeout: float = 10.0) -> list:
    """Start N POSTs at once and drive them to their ends; their Results in start order."""
    for i in range(n):
        c.start(BODY, f"m-{i}", i)
    done: dict = {}
    deadline = time.monotonic() + timeout
    while len(done) < n:
        assert time.monotonic() < deadline, f"only {len(done)} of {n} POSTs ended"
        c.drive(c.next_deadline())
        done.update(c.finished())
    return [done[i] for i in range(n)]


def test_http_posts_go_through_the_proxy_with_its_credentials(monkeypatch):
    # An environment that would send everything elsewhere, or around the proxy: ignored.
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    with Receiver() as r, Tinyproxy(connect_port=r.port, user=USER, password=PASSWORD) as proxy:
        c = client(r.url, proxy=proxy.url(USER, PASSWORD))
        assert c.post(BODY, "via-proxy").outcome == PostOutcome.SUCCESS
        q = r.requests[0]
        assert "tinyproxy" in q.headers.get("via", ""), q.headers  # tinyproxy forwarded it
        assert "proxy-authorization" not in q.headers  # the credentials stop at the proxy
        refused = client(r.url, proxy=proxy.url(USER, "wrong")).post(BODY, "bad-credentials")
        # tinyproxy answers 407 and closes without reading the body: libcurl sees the 407 or a reset.
        assert refused.outcome in (PostOutcome.HTTP_ERROR, PostOutcome.CONNECTION_ERROR) and refused.status in (
            407,
            None,
        )
        assert [q.headers["webhook-id"] for q in r.requests] == ["via-proxy"]
        assert PASSWORD not in refused.detail and PASSWORD not in repr(c) and PASSWORD not in c.url


def test_https_posts_are_tunnelled_with_connect_and_keep_mutual_tls(pki):
    with (
        Receiver(tls_cert=pki.server_cert, tls_key=pki.server_key, client_ca=pki.ca_cert) as r,
        Tinyproxy(connect_port=r.port, user=USER, password=PASSWORD) as proxy,
    ):
        c = client(
            r.url,
            ca_file=pki.ca_cert,
            client_cert=pki.client_cert,
            client_key=pki.client_key,
            proxy=proxy.url(USER, PASSWORD),
        )
        assert [c.post(BODY, f"tunnel-{i}").outcome for i in range(2)] == [PostOutcome.SUCCESS, PostOutcome.SUCCESS]
        assert c.connects == 1  # one tunnel, kept alive
        assert "CONNECT" in proxy.log() and f"127.0.0.1:{r.port}" in proxy.log()
        assert "via" not in r.requests[0].headers  # end to end TLS: the proxy saw no request
        assert [q.headers["webhook-id"] for q in r.requests] == ["tunnel-0", "tunnel-1"]


def test_a_dead_proxy_is_a_connection_error_not_a_direct_post():
    with Receiver() as r:
        result = client(r.url, proxy=f"http://127.0.0.1:{free_port()}").post(BODY, "dead-proxy")
        assert result.outcome == PostOutcome.CONNECTION_ERROR and not r.requests


def test_http2_over_tls_with_alpn_multiplexed_on_one_connection(pki):
    with H2Nginx(pki.server_cert, pki.server_key) as nginx:
        url = f"https://127.0.0.1:{nginx.tls_port}/events"
        c = client(url, ca_file=pki.ca_cert, http_version="2", max_in_flight=4)
        assert [res.outcome for res in post_many(c, 8)] == [PostOutcome.SUCCESS] * 8
        assert c.connects == 1  # four streams at a time on one connection
        lines = nginx.requests(8)
        assert len(lines) == 8 and {line[1] for line in lines} == {"HTTP/2.0"}
        assert len({line[6] for line in lines}) == 1  # nginx's connection serial number
        # "1.1" means 1.1 on https too (libcurl would otherwise offer h2 by ALPN).
        assert client(url, ca_file=pki.ca_cert).post(BODY, "h1").outcome == PostOutcome.SUCCESS
        assert nginx.requests(9)[-1][1] == "HTTP/1.1"


def test_cleartext_http2_with_prior_knowledge(pki):
    with H2Nginx(pki.server_cert, pki.server_key) as nginx:
        url = f"http://127.0.0.1:{nginx.clear_port}/events"
        assert client(url, http_version="2").post(BODY, "h2c").outcome == PostOutcome.SUCCESS
        assert nginx.requests(1)[-1][1:3] == ["HTTP/2.0", "204"]
        # The port speaks only HTTP/2: without prior knowledge a POST cannot succeed there.
        assert client(url).post(BODY, "h1").outcome != PostOutcome.SUCCESS
