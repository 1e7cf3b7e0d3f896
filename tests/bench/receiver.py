"""The bench's Python receiver: the "far" receiver (a delay per request) and the latency probe.

`python -m tests.bench.receiver [--delay S] [--port P]` listens on 127.0.0.1
(a free port unless given), prints `PORT` on stdout once listening, and
answers every POST with 204 after DELAY seconds, one thread per connection
(keep-alive; any number of concurrent connections). For each request it
records the arrival wall time (when the whole body is in) and, for a single
event envelope, `arrival - envelope.time`: the publish-to-receiver latency
(the bus publisher stamps `time` with time.time() when it publishes).
`GET /stats` answers the tallies as JSON. SIGTERM stops it.

Runs as its own process so its work never shares a GIL with the bench or the
agent. `FarReceiver` starts and queries one.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import orjson

MAX_HEADER = 64 * 1024
_BULK = re.compile(rb"\+(\d+)$")


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests = 0
        self.events = 0
        self.first = 0.0
        self.last = 0.0
        self.latencies: list[float] = []
        self.max_concurrent = 0
        self.concurrent = 0

    def record(self, arrival: float, headers: dict[bytes, bytes], body: bytes) -> None:
        webhook_id = headers.get(b"webhook-id", b"")
        m = _BULK.search(webhook_id)
        latency = None
        if m is None and b"-started-" not in webhook_id:
            try:
                latency = arrival - float(orjson.loads(body)["time"])
            except (ValueError, KeyError, TypeError):
                latency = None
        with self.lock:
            self.requests += 1
            self.events += int(m.group(1)) if m else 1
            self.first = arrival if self.requests == 1 else self.first
            self.last = arrival
            if latency is not None:
                self.latencies.append(latency)

    def snapshot(self) -> dict:
        with self.lock:
            return {
                "requests": self.requests,
                "events": self.events,
                "first": self.first,
                "last": self.last,
                "latencies": list(self.latencies),
                "max_concurrent": self.max_concurrent,
            }


def _read_request(conn: socket.socket, buf: bytearray) -> tuple[bytes, dict[bytes, bytes], bytes] | None:
    """One request off CONN (BUF keeps what was read beyond it); None when the peer closed."""
    while b"\r\n\r\n" not in buf:
        if len(buf) > MAX_HEADER:
            return None
        chunk = conn.recv(65536)
        if not chunk:
            return None
        buf += chunk
    end = buf.index(b"\r\n\r\n")
    head = bytes(buf[:end]).split(b"\r\n")
    del buf[: end + 4]
    headers = {}
    for line in head[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get(b"content-length", b"0") or 0)
    while len(buf) < length:
        chunk = conn.recv(max(65536, length - len(buf)))
        if not chunk:
            return None
        buf += chunk
    body = bytes(buf[:length])
    del buf[:length]
    return head[0], headers, body


def _serve(conn: socket.socket, delay: float, tally: Tally) -> None:
    buf = bytearray()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with tally.lock:
        tally.concurrent += 1
        tally.max_concurrent = max(tally.max_concurrent, tally.concurrent)
    try:
        while True:
            request = _read_request(conn, buf)
            if request is None:
                return
            arrival = time.time()
            line, headers, body = request
            if line.startswith(b"GET /stats"):
                payload = json.dumps(tally.snapshot()).encode()
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%b"
                    % (len(payload), payload)
                )
                continue
            tally.record(arrival, headers, body)
            if delay > 0:
                time.sleep(delay)
            conn.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")
    except OSError:
        return
    finally:
        with tally.lock:
            tally.concurrent -= 1
        conn.close()


def serve(port: int, delay: float) -> None:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(256)
    tally = Tally()
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    print(listener.getsockname()[1], flush=True)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=_serve, args=(conn, delay, tally), daemon=True).start()


class FarReceiver:
    """A receiver process (delay per request); `stats()` reads its tallies."""

    def __init__(self, delay: float = 0.0):
        self.delay = delay
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.bench.receiver", "--delay", repr(delay)],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.strip().isdigit():
            self.stop()
            raise RuntimeError("the bench receiver did not start")
        self.port = int(line)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stats(self) -> dict:
        with urllib.request.urlopen(self.url + "/stats", timeout=10) as resp:
            return json.loads(resp.read())

    def wait_events(self, count: int, timeout: float, idle: float = 5.0) -> dict:
        """Poll until COUNT events arrived, TIMEOUT passed, or nothing new came for IDLE s."""
        deadline = time.monotonic() + timeout
        seen, seen_at = -1, time.monotonic()
        while True:
            st = self.stats()
            now = time.monotonic()
            if st["events"] >= count or now >= deadline:
                return st
            if st["events"] != seen:
                seen, seen_at = st["events"], now
            elif now - seen_at >= idle:
                return st
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> FarReceiver:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay", type=float, default=0.0, help="seconds to wait before each answer")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    serve(args.port, args.delay)
    return 0


if __name__ == "__main__":
    sys.exit(main())
