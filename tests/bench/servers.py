"""The benchmark's receivers and load tools: nginx (the fast receiver), wrk, and their logs.

Owns `Nginx` (its own config in a temp dir, 127.0.0.1 on a free or given port,
`return 204;`, keep-alive without a request limit), `NginxLog` (the access log
of `/log/...` requests: `$msec $status $uri $http_webhook_id`, from which the
bench counts delivered events per run and takes the time of the last one), and
`run_wrk` (wrk with a Lua script that POSTs a typical event envelope).

Requests to `/log/RUN` are logged; everything else (wrk's ceiling load) is not,
so logging never lowers the ceiling. The number of events in one logged request
comes from its `webhook-id` (`EPOCH-OFFSET+COUNT` for a bulk envelope,
docs/internals.md), 1 when it has none (the naive peer).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
WRK = shutil.which("wrk") or "/usr/bin/wrk"
START_TIMEOUT = 10.0  # s nginx gets to listen
STOP_TIMEOUT = 10.0

_CONFIG = """\
worker_processes {workers};
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    client_body_buffer_size 1m;
    client_max_body_size 64m;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    log_format bench '$msec $status $uri $http_webhook_id';
    server {{
        listen 127.0.0.1:{port} reuseport backlog=4096;
        location /log/ {{
            access_log {dir}/access.log bench buffer=256k flush=20ms;
            return 204;
        }}
        location / {{
            return 204;
        }}
    }}
    server {{
        # Cleartext HTTP/2 (prior knowledge only) for the http_version = "2" rows; same paths, same log.
        listen 127.0.0.1:{h2_port} http2 reuseport backlog=4096;
        location /log/ {{
            access_log {dir}/access.log bench buffer=256k flush=20ms;
            return 204;
        }}
        location / {{
            return 204;
        }}
    }}
}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, timeout: float, proc: subprocess.Popen | None = None, what: str = "server") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening on port {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout:g} s")


class Nginx:
    """One nginx answering 204 to everything on 127.0.0.1:PORT, with its own temp dir."""

    def __init__(self, port: int | None = None, workers: str = "auto"):
        self.port = port or free_port()
        self.h2_port = free_port()
        self.workers = workers
        self.dir = tempfile.mkdtemp(prefix="esa-nginx-", dir="/tmp")
        os.chmod(self.dir, 0o755)  # nginx workers (another user when root) may need to enter it
        self.proc: subprocess.Popen | None = None
        self.log = NginxLog(os.path.join(self.dir, "access.log"))
        self.started_at = 0.0  # wall time nginx was seen listening

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def h2_url(self) -> str:
        """The cleartext HTTP/2 port (a client must speak HTTP/2 with prior knowledge)."""
        return f"http://127.0.0.1:{self.h2_port}"

    def start(self) -> Nginx:
        if not os.access(NGINX, os.X_OK):
            raise RuntimeError(f"nginx is not installed ({NGINX}); run 'make apt' as root")
        conf = os.path.join(self.dir, "nginx.conf")
        with open(conf, "w") as fh:
            fh.write(_CONFIG.format(dir=self.dir, port=self.port, h2_port=self.h2_port, workers=self.workers))
        self.proc = subprocess.Popen(
            [NGINX, "-p", self.dir, "-c", conf, "-g", "daemon off;"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(self.dir, "stderr.log"), "wb"),
        )
        try:
            wait_listening(self.port, START_TIMEOUT, self.proc, "nginx")
        except RuntimeError:
            self.stop()
            raise RuntimeError(f"nginx did not start: {self.errors()[-500:]}") from None
        self.started_at = time.time()
        return self

    def errors(self) -> str:
        out = []
        for name in ("stderr.log", "error.log"):
            try:
                with open(os.path.join(self.dir, name), errors="replace") as fh:
                    out.append(fh.read())
            except OSError:
                pass
        return "".join(out)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # fast shutdown; workers follow the master
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Nginx:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.cleanup()


_BULK_COUNT = re.compile(r"\+(\d+)$")


@dataclass
class PathTally:
    """What one `/log/RUN` path received."""

    requests: int = 0
    events: int = 0
    ok: int = 0
    first: float = 0.0  # wall time of the first request (nginx $msec: when it was answered)
    last: float = 0.0


@dataclass
class NginxLog:
    """Incremental reader of the access log; tallies per path."""

    path: str
    tallies: dict[str, PathTally] = field(default_factory=dict)
    _offset: int = 0
    _partial: bytes = b""

    def refresh(self) -> None:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self._offset)
                chunk = fh.read()
        except FileNotFoundError:
            return
        self._offset += len(chunk)
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()
        for raw in lines:
            parts = raw.decode("utf-8", "replace").split(" ")
            if len(parts) < 4:
                continue
            msec, status, uri, webhook_id = parts[0], parts[1], parts[2], parts[3]
            t = self.tallies.setdefault(uri, PathTally())
            when = float(msec)
            t.requests += 1
            if status.startswith("2"):
                t.ok += 1
                m = _BULK_COUNT.search(webhook_id)
                t.events += int(m.group(1)) if m else 1
            t.first = when if t.requests == 1 else min(t.first, when)
            t.last = max(t.last, when)

    def tally(self, uri: str) -> PathTally:
        self.refresh()
        return self.tallies.get(uri, PathTally())

    def wait_events(self, uri: str, count: int, timeout: float, idle: float = 5.0) -> PathTally:
        """Poll until URI has COUNT delivered events, or TIMEOUT passes, or nothing new came for IDLE s."""
        deadline = time.monotonic() + timeout
        seen, seen_at = -1, time.monotonic()
        while True:
            t = self.tally(uri)
            now = time.monotonic()
            if t.events >= count or now >= deadline:
                return t
            if t.events != seen:
                seen, seen_at = t.events, now
            elif now - seen_at >= idle:
                return t
            time.sleep(0.02)


def envelope_body(size: int = 600) -> bytes:
    """A typical envelope of about SIZE bytes from the simulated mix (what a sink receives)."""
    import orjson

    from sinks import envelope
    from tools.simulator import events

    best = None
    for i, (name, data) in enumerate(events(3)):
        body = envelope.envelope(b'"10.44.99.2"', i + 1, 2, b"1700000000.25", name, orjson.dumps(data))
        if best is None or abs(len(body) - size) < abs(len(best) - size):
            best = body
        if i > 400:
            break
    assert best is not None
    return best


def _lua_string(data: bytes) -> str:
    return '"' + "".join(f"\\{b:03d}" if (b < 32 or b > 126 or b in (34, 92)) else chr(b) for b in data) + '"'


def run_wrk(url: str, connections: int, seconds: float, body: bytes, workdir: str) -> dict:
    """wrk POSTing BODY with CONNECTIONS connections for SECONDS; {"rps", "requests", "errors", "body_bytes"}."""
    if not os.access(WRK, os.X_OK):
        raise RuntimeError(f"wrk is not installed ({WRK}); run 'make apt' as root")
    script = os.path.join(workdir, "post.lua")
    with open(script, "w") as fh:
        fh.write(
            f'wrk.method = "POST"\nwrk.body = {_lua_string(body)}\nwrk.headers["Content-Type"] = "application/json"\n'
        )
    threads = max(1, min(connections, os.cpu_count() or 1))
    duration = max(1, round(seconds))
    out = subprocess.run(
        [WRK, f"-t{threads}", f"-c{connections}", f"-d{duration}s", "-s", script, url],
        capture_output=True,
        text=True,
        timeout=duration + 30,
    )
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr.strip()[:300]}")
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out.stdout)
    total = re.search(r"(\d+) requests in", out.stdout)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out.stdout)
    socket_errors = re.search(r"Socket errors: (.*)", out.stdout)
    if rps is None or total is None:
        raise RuntimeError(f"cannot read wrk's output: {out.stdout[:300]}")
    return {
        "rps": float(rps.group(1)),
        "requests": int(total.group(1)),
        "errors": int(errors.group(1)) if errors else 0,
        "socket_errors": socket_errors.group(1).strip() if socket_errors else "",
        "body_bytes": len(body),
        "connections": connections,
        "threads": threads,
        "seconds": duration,
    }
