"""End to end: `GET /v1/sinks/NAME/attempts` and `eventsinkctl attempts` on a real agent.

- A receiver that answers 500 twice, then 200: the answer shows the successes, then the
  failures, newest first, with their seq, webhook-id, outcome and status; the table and
  `--json` of eventsinkctl say the same.
- More than 1000 POSTs: the answer holds the newest 1000 and no more.
- Sinks with a password in the URL, Basic auth and a bearer token, against a receiver that
  quotes their credentials back in its reason phrases and a redirect's Location, and a dead
  port: no secret appears in any answer, table or JSON.
- A bad limit is 400, an unknown sink 404, each one plain line from eventsinkctl.
"""

from __future__ import annotations

import datetime
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.e2e.harness import free_port, sink
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e

PASSWORD, URL_PASSWORD, TOKEN = "pw-Zq81-topsecret", "urlpw-K4j2", "tok-Br88-secret"


def attempts(agent, name: str, limit: int | None = None) -> list:
    path = f"/v1/sinks/{name}/attempts" + (f"?limit={limit}" if limit is not None else "")
    status, body = agent.client().call("GET", path)
    assert status == 200, body
    return body


def at_least(agent, name: str, n: int, limit: int | None = None, **kw) -> list:
    """The attempts answer once it holds N entries (the worker may still be catching up)."""

    def enough():
        status, body = agent.client().call("GET", f"/v1/sinks/{name}/attempts?limit={limit or 1000}")
        return body if status == 200 and len(body) >= n else None

    return wait_until(enough, what=f"{n} attempts of sink {name}", **kw)


def publish_many(agent, n: int) -> None:
    with agent.publisher() as pub:
        agent.bus_ready(pub)
        for i in range(n):
            pub.publish("conference_updated", {"name": f"c{i}"})


def test_failures_then_successes_newest_first_in_the_api_and_eventsinkctl(make_agent, receiver):
    receiver.script(lambda i: (500, None, 0.0) if i < 2 else (200, None, 0.0))
    agent = make_agent([sink("cdr", receiver.url)], tuning={"initial_retry_backoff": 0.1})
    assert receiver.wait_events(1)
    publish_many(agent, 2)
    assert receiver.wait_events(3)
    body = at_least(agent, "cdr", 5)
    assert len(body) == 5 == len(receiver.requests)
    got = [(a["seq"], a["events"], a["outcome"], a["status"]) for a in body]
    assert got == [
        (3, 1, "success", 200),
        (2, 1, "success", 200),
        (1, 1, "success", 200),
        (1, 1, "http_error", 500),
        (1, 1, "http_error", 500),
    ]
    assert [a["webhook_id"] for a in body] == [r.headers["webhook-id"] for r in reversed(receiver.requests)]
    assert body[0]["detail"] == "HTTP 200" and body[-1]["detail"] == "HTTP 500 Internal Server Error"
    stamps = [datetime.datetime.fromisoformat(a["at"].replace("Z", "+00:00")) for a in body]
    assert stamps == sorted(stamps, reverse=True) and all(a["at"].endswith("Z") for a in body)
    assert all(a["duration"] > 0 for a in body)
    assert attempts(agent, "cdr", limit=2) == body[:2]

    out = agent.ctl("attempts", "cdr")
    assert out.returncode == 0 and out.stderr == "", out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["TIME", "SEQ", "EVENTS", "WEBHOOK-ID", "OUTCOME", "STATUS", "DURATION", "DETAIL"]
    assert [line.split()[1:6] for line in lines[1:]] == [
        [str(s), str(e), a["webhook_id"], o, str(st)] for (s, e, o, st), a in zip(got, body, strict=True)
    ]
    out = agent.ctl("attempts", "cdr", "--json", "--limit", "3")
    assert out.returncode == 0 and json.loads(out.stdout) == body[:3]


def test_the_answer_stays_bounded_at_1000_after_more_posts(make_agent, receiver):
    # 1100 events at once are a backlog above the default max_background_posts (an alarm would stop it)
    agent = make_agent([sink("cdr", receiver.url)], tuning={"max_background_posts": 5000})
    publish_many(agent, 1100)
    assert receiver.wait_events(1101, timeout=30), receiver.summary()
    wait_until(lambda: attempts(agent, "cdr", 1)[0]["seq"] == 1101, what="the last POST in the answer")
    body = attempts(agent, "cdr", limit=5000)  # clamped to 1000
    assert len(body) == 1000
    assert [a["seq"] for a in body] == list(range(1101, 101, -1))
    assert len(attempts(agent, "cdr")) == 50  # the default


class QuotingReceiver:
    """Answers /basic with a 500 naming the Basic password, then a redirect whose Location carries
    the URL's credentials, then 200; /bearer with a 500 quoting the Authorization header, then 200."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                n = outer.counts[self.path] = outer.counts.get(self.path, 0) + 1
                extra = {}
                if self.path == "/basic" and n == 1:
                    code, phrase = 500, f"wrong {PASSWORD} or {URL_PASSWORD}"
                elif self.path == "/basic" and n == 2:
                    code, phrase = 302, "Found"
                    extra["Location"] = f"http://user:{URL_PASSWORD}@127.0.0.1:{outer.port}/moved"
                elif self.path == "/bearer" and n == 1:
                    code, phrase = 500, f"refused {self.headers.get('Authorization')}"
                else:
                    code, phrase = 200, "OK"
                self.send_response(code, phrase)
                for key, value in extra.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def quoting():
    rx = QuotingReceiver()
    yield rx
    rx.close()


def test_no_credential_appears_in_an_answer(make_agent, quoting):
    agent = make_agent([], start=False, tuning={"initial_retry_backoff": 0.1, "max_retry_backoff": 60})
    token_file = f"{agent.base}/bearer.token"
    with open(token_file, "w") as fh:
        fh.write(TOKEN + "\n")
    port, dead = quoting.port, free_port()
    agent.sinks = [
        sink("basic", f"http://user:{URL_PASSWORD}@127.0.0.1:{port}/basic", username="cdr", password=PASSWORD),
        sink("bearer", f"http://127.0.0.1:{port}/bearer", bearer_token_file=token_file),
        sink("dead", f"http://user:{URL_PASSWORD}@127.0.0.1:{dead}/events", username="x", password=PASSWORD),
    ]
    agent.write_config()
    agent.start()
    basic = at_least(agent, "basic", 3)
    assert [(a["outcome"], a["status"]) for a in basic[-3:]] == [
        ("success", 200),
        ("redirect", 302),
        ("http_error", 500),
    ]
    assert basic[-1]["detail"] == "HTTP 500 wrong *** or ***"
    assert basic[-2]["detail"] == f"HTTP 302 redirect to http://127.0.0.1:{port}/moved (not followed)"
    bearer = at_least(agent, "bearer", 2)
    assert bearer[-1]["detail"] == "HTTP 500 refused Bearer ***"
    dead_ones = at_least(agent, "dead", 2)
    assert {a["outcome"] for a in dead_ones} == {"connection_error"} and all(a["status"] is None for a in dead_ones)
    seen = {name: json.dumps(attempts(agent, name)) for name in ("basic", "bearer", "dead")}
    for name in ("basic", "bearer", "dead"):
        seen[f"{name} table"] = agent.ctl("attempts", name).stdout
        seen[f"{name} --json"] = agent.ctl("attempts", name, "--json").stdout
    for where, text in seen.items():
        assert text, where
        for secret in (PASSWORD, URL_PASSWORD, TOKEN):
            assert secret not in text, f"{secret!r} appears in {where}"


def test_bad_limit_400_and_unknown_sink_404(make_agent, receiver):
    agent = make_agent([sink("cdr", receiver.url)])
    client = agent.client()
    for bad in ("abc", "0", "-5", "1.5", ""):
        status, body = client.call("GET", f"/v1/sinks/cdr/attempts?limit={bad}")
        assert status == 400 and "limit must be a whole number of at least 1" in body["error"], (bad, body)
    status, body = client.call("GET", "/v1/sinks/nope/attempts")
    assert status == 404 and "nope" in body["error"]
    for args, code in ((("attempts", "nope"), 1), (("attempts", "cdr", "--limit", "x"), 1)):
        out = agent.ctl(*args)
        lines = out.stderr.strip().splitlines()
        assert out.returncode == code and len(lines) == 1 and lines[0].startswith("eventsinkctl: "), out.stderr
        assert "Traceback" not in out.stderr and out.stdout == ""
    assert "Traceback" not in agent.log()
