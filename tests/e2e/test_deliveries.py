"""End to end: the POSTs as sent (`GET /v1/sinks/NAME/deliveries`, `eventsinkctl deliveries`) and
their stream (`GET /v1/deliveries?follow=1`) on a real agent with real receivers on 127.0.0.1.

- Bodies as the receiver got them, byte for byte: plain, gzip (shown decompressed) and bulk;
  headers as sent (webhook-id, Content-Encoding).
- Secrets masked: Basic auth, a bearer token, custom headers, a signing secret and a proxy with
  credentials (tinyproxy); every answer, table, JSON and streamed line searched for them.
- The stream: exactly one line per POST, each sink's or one sink's, through a raw socket and
  through `curl --unix-socket -N`; it ends when the client closes, and then the workers stop
  streaming (`status` shows no follower and no streaming worker); a worker killed with -9 is
  replaced by one that streams too.
- Limits: default 20, at most 100, newest first; a bad limit 400, an unknown sink 404, no
  follow=1 400.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading

import pytest

from tests.e2e.harness import sink
from tests.helpers import wait_until
from tests.sinks.real_servers import Tinyproxy

pytestmark = pytest.mark.e2e

PASSWORD, TOKEN, HEADER_VALUE = "pw-Dl71-topsecret", "tok-Dl44-secret", "hdr-Dl93-secret"
PROXY_USER, PROXY_PASSWORD = "dlproxy", "px-Dl55-secret"
SIGNING = "whsec_ZGVsaXZlcmllcyBlMmUgc2lnbmluZyBrZXkgMTIzNDU="


def publish_many(agent, n: int, name: str = "conference_updated") -> None:
    with agent.publisher() as pub:
        agent.bus_ready(pub)
        for i in range(n):
            pub.publish(name, {"name": f"caf\u00e9 \u2713 c{i}"})


def deliveries(agent, name: str, limit: int | None = None) -> list:
    path = f"/v1/sinks/{name}/deliveries" + (f"?limit={limit}" if limit is not None else "")
    status, body = agent.client().call("GET", path)
    assert status == 200, body
    return body


def at_least(agent, name: str, n: int, timeout: float = 15.0) -> list:
    def enough():
        body = deliveries(agent, name, 100)
        return body if len(body) >= n else None

    return wait_until(enough, timeout=timeout, what=f"{n} deliveries of sink {name}")


class FollowClient:
    """A raw HTTP/1.1 client of `GET /v1/deliveries?follow=1` on the control socket, reading the
    chunked NDJSON answer in a thread into `lines` (decoded objects)."""

    def __init__(self, agent, query: str = "follow=1"):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(agent.control_socket)
        self.sock.sendall(f"GET /v1/deliveries?{query} HTTP/1.1\r\nHost: agent\r\n\r\n".encode())
        self.lines: list[dict] = []
        self.head = b""
        self.ended = threading.Event()  # the agent ended the answer (the terminating chunk, or EOF)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        buf = b""
        try:
            while b"\r\n\r\n" not in buf:
                data = self.sock.recv(65536)
                if not data:
                    return
                buf += data
            self.head, buf = buf.split(b"\r\n\r\n", 1)
            pending = b""
            while True:
                while b"\r\n" in buf:
                    size_line, rest = buf.split(b"\r\n", 1)
                    size = int(size_line, 16)
                    if len(rest) < size + 2:
                        break
                    if size == 0:
                        return
                    pending += rest[:size]
                    buf = rest[size + 2 :]
                    *done, pending = pending.split(b"\n")
                    self.lines += [json.loads(line) for line in done]
                data = self.sock.recv(65536)
                if not data:
                    return
                buf += data
        except OSError:
            return
        finally:
            self.ended.set()

    def close(self) -> None:
        try:  # a close() alone would wait for the reading thread's recv() before the agent sees EOF
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self._thread.join(timeout=5)


def followed(agent, followers: int, streaming: list[str]) -> dict:
    """Wait until status says FOLLOWERS open streams and exactly the STREAMING sinks' workers stream."""

    def seen():
        got = agent.status()["deliveries"]
        return got if got == {"followers": followers, "streaming": sorted(streaming)} else None

    return wait_until(seen, timeout=15, what=f"{followers} followers, {streaming} streaming")


def test_bodies_and_headers_as_the_receiver_got_them_plain_gzip_and_bulk(make_agent, make_receiver):
    plain, packed, bulk = make_receiver(), make_receiver(), make_receiver()
    agent = make_agent(
        [
            sink("plain", plain.url),
            sink("packed", packed.url, compression="gzip"),
            sink("bulk", bulk.url, bulk=True, bulk_max_events=3, bulk_interval=0.2),
        ]
    )
    for rx in (plain, packed, bulk):
        assert rx.wait_events(1)
    publish_many(agent, 5)
    for rx in (plain, packed, bulk):
        assert rx.wait_events(6), rx.summary()
    for name, rx in (("plain", plain), ("packed", packed), ("bulk", bulk)):
        wait_until(lambda: len(deliveries(agent, name)) == len(rx.requests), what=f"every POST of {name}")
        shown = deliveries(agent, name)
        by_id = {r.headers["webhook-id"]: r for r in rx.requests}
        assert sorted(by_id) == sorted(d["webhook_id"] for d in shown)
        for d in shown:
            got = by_id[d["webhook_id"]]
            assert d["body"].encode("utf-8") == (got.content if got.content is not None else got.body), name
            assert d["headers"]["webhook-id"] == d["webhook_id"]
            assert d["headers"]["Content-Type"] == "application/json" and "Expect" not in d["headers"]
            assert (d["outcome"], d["status"]) == ("success", 200) and d["duration"] > 0
            assert d["at"].endswith("Z")
    packed_one = deliveries(agent, "packed", 1)[0]
    assert packed_one["headers"]["Content-Encoding"] == "gzip"
    assert packed.requests[-1].body[:2] == b"\x1f\x8b"  # it went compressed; the answer shows it unpacked
    assert json.loads(packed_one["body"])["data"]["name"] == "caf\u00e9 \u2713 c4"
    bulk_shown = deliveries(agent, "bulk")
    assert sum(d["events"] for d in bulk_shown) == 6 and max(d["events"] for d in bulk_shown) > 1


def test_no_secret_appears_in_any_answer_or_stream(make_agent, make_receiver):
    basic = make_receiver(username="cdr", password=PASSWORD, secret=SIGNING)
    bearer = make_receiver(bearer_token=TOKEN)
    via_proxy = make_receiver()
    with Tinyproxy(connect_port=via_proxy.port, user=PROXY_USER, password=PROXY_PASSWORD) as proxy:
        agent = make_agent([], start=False)
        token_file = f"{agent.base}/bearer.token"
        with open(token_file, "w") as fh:
            fh.write(TOKEN + "\n")
        agent.sinks = [
            sink(
                "basic",
                basic.url,
                username="cdr",
                password=PASSWORD,
                secret=SIGNING,
                headers={"X-Api-Key": HEADER_VALUE, "X-Plain": "visible"},
            ),
            sink("bearer", bearer.url, bearer_token_file=token_file, compression="gzip"),
            sink(
                "proxied",
                via_proxy.url,
                proxy=proxy.url(PROXY_USER, PROXY_PASSWORD),
                headers={"X-Proxy-Key": HEADER_VALUE},
            ),
        ]
        agent.write_config()
        agent.start()
        for rx in (basic, bearer, via_proxy):
            assert rx.wait_events(1), rx.summary()
        stream = FollowClient(agent)
        followed(agent, 1, ["basic", "bearer", "proxied"])
        publish_many(agent, 2)
        for rx in (basic, bearer, via_proxy):
            assert rx.wait_events(3), rx.summary()
        assert basic.summary()["auth_failures"] == 0 and basic.summary()["bad_signatures"] == 0
        wait_until(lambda: len(stream.lines) >= 6, what="six streamed POSTs")
        seen = {"stream": json.dumps(stream.lines)}
        stream.close()
        for name in ("basic", "bearer", "proxied"):
            seen[name] = json.dumps(at_least(agent, name, 3))
            seen[f"{name} table"] = agent.ctl("deliveries", name).stdout
            seen[f"{name} --json"] = agent.ctl("deliveries", name, "--json").stdout
        assert "via" in via_proxy.requests[-1].headers  # it went through tinyproxy
    shown = {name: deliveries(agent, name, 1)[0]["headers"] for name in ("basic", "bearer", "proxied")}
    assert shown["basic"]["Authorization"] == "***" and shown["basic"]["X-Api-Key"] == "***"
    assert shown["basic"]["X-Plain"] == "***"  # every configured header's value is a secret (docs/control-api.md)
    assert shown["basic"]["User-Agent"].startswith("eventsink-agent/") and shown["basic"][
        "webhook-signature"
    ].startswith("v1,")
    assert shown["bearer"]["Authorization"] == "***" and shown["bearer"]["Content-Encoding"] == "gzip"
    assert shown["proxied"]["X-Proxy-Key"] == "***"
    seen["status"] = json.dumps(agent.status())
    for where, text in seen.items():
        assert text, where
        for secret in (
            PASSWORD,
            TOKEN,
            HEADER_VALUE,
            PROXY_PASSWORD,
            f"{PROXY_USER}:",
            SIGNING,
            SIGNING.removeprefix("whsec_"),
        ):
            assert secret not in text, f"{secret!r} appears in {where}"


def test_the_stream_yields_one_line_per_post_and_ends_when_the_client_closes(make_agent, make_receiver):
    a, b = make_receiver(), make_receiver()
    agent = make_agent([sink("a", a.url), sink("b", b.url)])
    assert a.wait_events(1) and b.wait_events(1)
    everything, only_b = FollowClient(agent), FollowClient(agent, "follow=1&sink=b")
    head = wait_until(lambda: everything.head, what="the stream's head")
    assert head.startswith(b"HTTP/1.1 200 ") and b"Content-Type: application/x-ndjson" in head
    assert b"Transfer-Encoding: chunked" in head
    followed(agent, 2, ["a", "b"])
    publish_many(agent, 4)
    assert a.wait_events(5) and b.wait_events(5)
    wait_until(lambda: len(everything.lines) >= 8 and len(only_b.lines) >= 4, what="the streamed POSTs")
    publish_many(agent, 1)  # one more each: a duplicate or a late line would show up before these
    assert a.wait_events(6) and b.wait_events(6)
    wait_until(lambda: len(everything.lines) >= 10 and len(only_b.lines) >= 5, what="the last POSTs")
    for rx, name in ((a, "a"), (b, "b")):
        ids = [r.headers["webhook-id"] for r in rx.requests[1:]]
        mine = [line for line in everything.lines if line["sink"] == name]
        assert [line["webhook_id"] for line in mine] == ids, name
        assert [line["body"].encode() for line in mine] == [r.body for r in rx.requests[1:]]
    assert len(everything.lines) == 10
    assert [line["webhook_id"] for line in only_b.lines] == [r.headers["webhook-id"] for r in b.requests[1:]]
    assert {line["sink"] for line in only_b.lines} == {"b"}

    everything.close()
    followed(agent, 1, ["b"])  # a's worker was told to stop: nobody follows it now
    only_b.close()
    followed(agent, 0, [])
    publish_many(agent, 2)  # nobody follows: the workers do not stream, the ring still records
    assert a.wait_events(8) and b.wait_events(8)
    wait_until(
        lambda: deliveries(agent, "a", 1)[0]["webhook_id"] == a.requests[-1].headers["webhook-id"],
        what="the last POST in the ring",
    )
    assert agent.status()["deliveries"] == {"followers": 0, "streaming": []}
    assert "Traceback" not in agent.log()


def test_curl_follows_and_the_follow_ends_with_it(make_agent, receiver):
    curl = shutil.which("curl")
    if curl is None:
        pytest.fail("curl is not installed")
    agent = make_agent([sink("cdr", receiver.url)])
    assert receiver.wait_events(1)
    proc = subprocess.Popen(
        [curl, "-sS", "-N", "--unix-socket", agent.control_socket, "http://agent/v1/deliveries?follow=1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        followed(agent, 1, ["cdr"])
        publish_many(agent, 3)
        assert receiver.wait_events(4)
        lines: list[dict] = []
        # curl -N: each line as it comes; read in a thread so that the wait has a deadline
        threading.Thread(target=lambda: lines.extend(json.loads(raw) for raw in proc.stdout), daemon=True).start()
        wait_until(lambda: len(lines) >= 3, timeout=15, what="three lines from curl")
        assert [line["webhook_id"] for line in lines] == [r.headers["webhook-id"] for r in receiver.requests[1:]]
        assert all(line["sink"] == "cdr" and line["outcome"] == "success" for line in lines)
    finally:
        proc.kill()
        proc.wait(timeout=5)
    followed(agent, 0, [])


def test_limits_and_errors(make_agent, receiver):
    agent = make_agent([sink("cdr", receiver.url)], tuning={"max_background_posts": 5000})
    publish_many(agent, 120)
    assert receiver.wait_events(121, timeout=30), receiver.summary()
    wait_until(lambda: deliveries(agent, "cdr", 1)[0]["seq"] == 121, what="the last POST in the answer")
    assert [d["seq"] for d in deliveries(agent, "cdr", 1000)] == list(range(121, 21, -1))  # at most 100
    assert [d["seq"] for d in deliveries(agent, "cdr")] == list(range(121, 101, -1))  # 20 by default
    assert [d["seq"] for d in deliveries(agent, "cdr", 3)] == [121, 120, 119]
    client = agent.client()
    for bad in ("abc", "0", "-5", "1.5", ""):
        status, body = client.call("GET", f"/v1/sinks/cdr/deliveries?limit={bad}")
        assert status == 400 and "limit must be a whole number of at least 1" in body["error"], (bad, body)
    for path in ("/v1/sinks/nope/deliveries", "/v1/deliveries?follow=1&sink=nope"):
        status, body = client.call("GET", path)
        assert status == 404 and "nope" in body["error"], (path, body)
    for path in ("/v1/deliveries", "/v1/deliveries?follow=0"):
        status, body = client.call("GET", path)
        assert status == 400 and "follow=1" in body["error"], (path, body)
    assert agent.status()["deliveries"]["followers"] == 0

    out = agent.ctl("deliveries", "cdr", "--limit", "2")
    assert out.returncode == 0 and out.stderr == "", out.stderr
    blocks = out.stdout.strip().split("\n\n")
    assert len(blocks) == 2 and "seq 121" in blocks[0] and "seq 120" in blocks[1]
    assert receiver.requests[-1].body.decode() in blocks[0]
    out = agent.ctl("deliveries", "cdr", "--json", "--limit", "3")
    assert out.returncode == 0 and [d["seq"] for d in json.loads(out.stdout)] == [121, 120, 119]
    for args in (("deliveries", "nope"), ("deliveries", "cdr", "--limit", "x")):
        out = agent.ctl(*args)
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 1 and len(lines) == 1 and lines[0].startswith("eventsinkctl: "), out.stderr
    assert "Traceback" not in agent.log()


def test_a_new_worker_of_a_followed_sink_streams_too(make_agent, receiver):
    agent = make_agent([sink("cdr", receiver.url)])
    assert receiver.wait_events(1)
    stream = FollowClient(agent)
    followed(agent, 1, ["cdr"])
    old = agent.sink_status("cdr")["pid"]
    os.kill(old, signal.SIGKILL)
    wait_until(
        lambda: agent.sink_status("cdr")["pid"] not in (None, old) and agent.sink_status("cdr")["state"] == "running",
        timeout=20,
        what="a new worker",
    )
    followed(agent, 1, ["cdr"])  # the new worker reports that it streams: it was told on its first report
    before = len(receiver.requests)
    publish_many(agent, 2)
    assert receiver.wait_for(lambda r: len(r.requests) >= before + 2)
    ids = [r.headers["webhook-id"] for r in receiver.requests[before : before + 2]]
    wait_until(lambda: [line["webhook_id"] for line in stream.lines][-2:] == ids, what="the new worker's POSTs")
    stream.close()
    followed(agent, 0, [])
