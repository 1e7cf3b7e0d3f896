"""The bare pycurl loop: the in-order ceiling of one kept-alive connection, and the CPU of one POST.

`python -m tests.bench.curl_loop URL BODY_FILE COUNT RATE` POSTs the bytes of
BODY_FILE to URL (127.0.0.1 only) COUNT times on one `pycurl.Curl` handle, kept
alive and reused, one request after the other: as fast as it can when RATE is 0,
else request i at start + i / RATE (absolute deadlines). `Expect:` is empty (no
100-continue round trip), signals are off, TCP_NODELAY is on, the response body
is discarded. The loop gives up COUNT / max(RATE, MIN_RATE) + SLACK s after it
started. One request before the loop opens the connection and is not counted.
Prints one JSON line: requests, ok (2xx), seconds, rate, cpu_seconds (this
process's CPU over the loop only) and cpu_us_per_post.

Runs as its own process so its CPU is its own (as the agent's worker is).
"""

from __future__ import annotations

import json
import sys
import time
from urllib.parse import urlsplit

import pycurl

MIN_RATE = 1000.0  # requests/s below which a flat-out loop is given up on
SLACK = 30.0


def _handle(url: str, body: bytes) -> pycurl.Curl:
    if urlsplit(url).hostname != "127.0.0.1":
        raise SystemExit(f"curl_loop: only 127.0.0.1 targets, not {url}")
    curl = pycurl.Curl()
    curl.setopt(pycurl.URL, url)
    curl.setopt(pycurl.POST, 1)
    curl.setopt(pycurl.POSTFIELDS, body)
    curl.setopt(pycurl.HTTPHEADER, ["Content-Type: application/json", "Expect:"])
    curl.setopt(pycurl.NOSIGNAL, 1)
    curl.setopt(pycurl.TCP_NODELAY, 1)
    curl.setopt(pycurl.CONNECTTIMEOUT, 5)
    curl.setopt(pycurl.TIMEOUT, 10)
    curl.setopt(pycurl.WRITEFUNCTION, lambda chunk: None)  # discard (nginx's 204 has none anyway)
    return curl


def post_loop(url: str, body: bytes, count: int, rate: float) -> dict:
    curl = _handle(url, body)
    try:
        curl.perform()  # opens the kept-alive connection; not counted
        perform, info, code = curl.perform, curl.getinfo, pycurl.RESPONSE_CODE
        ok = requests = 0
        start, cpu0 = time.monotonic(), time.process_time()
        give_up = start + count / max(rate, MIN_RATE) + SLACK
        for i in range(count):
            now = time.monotonic()
            if now > give_up:
                break
            if rate > 0:
                due = start + i / rate
                if due > now:
                    time.sleep(due - now)
            perform()
            requests += 1
            ok += 200 <= info(code) < 300
        cpu, seconds = time.process_time() - cpu0, time.monotonic() - start
    finally:
        curl.close()
    return {
        "requests": requests,
        "ok": ok,
        "seconds": seconds,
        "rate": requests / seconds if seconds > 0 else 0.0,
        "paced_at": rate,
        "cpu_seconds": cpu,
        "cpu_us_per_post": cpu / max(1, requests) * 1e6,
        "body_bytes": len(body),
    }


def main(argv: list[str]) -> int:
    url, body_file, count, rate = argv[0], argv[1], int(argv[2]), float(argv[3])
    with open(body_file, "rb") as fh:
        body = fh.read()
    print(json.dumps(post_loop(url, body, count, rate)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
