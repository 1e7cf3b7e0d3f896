"""Real Debian servers for the HTTP-option tests, each with its own config in a temp dir on 127.0.0.1:
`Tinyproxy` (a forward proxy, optionally with Basic credentials) and `H2Nginx` (nginx speaking
HTTP/2 over TLS with ALPN and in cleartext with prior knowledge, logging the protocol of every
request). `make test` installs both packages (the Makefile's APT_PACKAGES); a missing binary is a
failure, never a skip."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time

from tests.bench.servers import NGINX, free_port, wait_listening

TINYPROXY = shutil.which("tinyproxy") or "/usr/bin/tinyproxy"
START_TIMEOUT = 10.0


def _require(binary: str, package: str) -> None:
    if not os.access(binary, os.X_OK):
        raise AssertionError(f"{binary} is not installed: 'make test' installs Debian's {package} when run as root")


class _Process:
    """A server process in the foreground, its temp dir, and its output."""

    def __init__(self, prefix: str):
        self.dir = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
        os.chmod(self.dir, 0o755)  # the server may drop to another user and still needs to enter it
        self.proc: subprocess.Popen | None = None
        self.output = os.path.join(self.dir, "output.log")

    def _spawn(self, argv: list[str], port: int, what: str) -> None:
        with open(self.output, "wb") as out:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_listening(port, START_TIMEOUT, self.proc, what)
        except RuntimeError as exc:
            self.close()
            raise AssertionError(f"{exc}: {self.text('output.log')[-800:]}") from None

    def text(self, name: str) -> str:
        try:
            with open(os.path.join(self.dir, name), errors="replace") as fh:
                return fh.read()
        except OSError:
            return ""

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(START_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __exit__(self, *exc) -> None:
        self.close()


class Tinyproxy(_Process):
    """tinyproxy on 127.0.0.1:PORT that only lets CONNECT through to CONNECT_PORT; with USER and
    PASSWORD it requires them (Proxy-Authorization: Basic)."""

    def __init__(self, connect_port: int, user: str = "", password: str = ""):
        super().__init__("esa-tinyproxy-")
        self.port = free_port()
        lines = [
            f"Port {self.port}",
            "Listen 127.0.0.1",
            "Allow 127.0.0.1",
            f"ConnectPort {connect_port}",
            "Timeout 30",
            "MaxClients 50",
            "LogLevel Connect",
        ]  # Via: tinyproxy on forwarded requests
        if os.getuid() == 0:  # tinyproxy will not run as root
            lines += ["User nobody", "Group nogroup"]
        if user:
            lines.append(f"BasicAuth {user} {password}")
        self.conf = os.path.join(self.dir, "tinyproxy.conf")
        with open(self.conf, "w") as fh:
            fh.write("\n".join(lines) + "\n")

    def url(self, user: str = "", password: str = "") -> str:
        credentials = f"{user}:{password}@" if user else ""
        return f"http://{credentials}127.0.0.1:{self.port}"

    def __enter__(self) -> Tinyproxy:
        _require(TINYPROXY, "tinyproxy")
        self._spawn([TINYPROXY, "-d", "-c", self.conf], self.port, "tinyproxy")
        return self

    def log(self) -> str:
        return self.text("output.log")


_NGINX_H2 = """\
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 256; }}
http {{
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    log_format protocol '$server_port $server_protocol $status $request_method $uri $http_webhook_id $connection';
    access_log {dir}/access.log protocol;
    server {{
        listen 127.0.0.1:{tls_port} ssl http2;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{ return 204; }}
    }}
    server {{
        listen 127.0.0.1:{clear_port} http2;
        location / {{ return 204; }}
    }}
}}
"""


class H2Nginx(_Process):
    """nginx with HTTP/2 over TLS (ALPN) on `tls_port` and cleartext HTTP/2 (prior knowledge only)
    on `clear_port`; every request is logged with its port, protocol and connection number."""

    def __init__(self, cert: str, key: str):
        super().__init__("esa-nginx-h2-")
        self.tls_port, self.clear_port = free_port(), free_port()
        # nginx's workers may run as another user: give them copies they can read.
        self.cert, self.key = os.path.join(self.dir, "server.pem"), os.path.join(self.dir, "server.key")
        shutil.copyfile(cert, self.cert)
        shutil.copyfile(key, self.key)
        self.conf = os.path.join(self.dir, "nginx.conf")
        with open(self.conf, "w") as fh:
            fh.write(
                _NGINX_H2.format(
                    dir=self.dir, tls_port=self.tls_port, clear_port=self.clear_port, cert=self.cert, key=self.key
                )
            )

    def __enter__(self) -> H2Nginx:
        _require(NGINX, "nginx-light")
        self._spawn([NGINX, "-p", self.dir, "-c", self.conf, "-g", "daemon off;"], self.tls_port, "nginx")
        wait_listening(self.clear_port, START_TIMEOUT, self.proc, "nginx")
        return self

    def requests(self, count: int = 0, timeout: float = 5.0) -> list[list[str]]:
        """The access log, one list of fields per request, once it has COUNT lines at least (nginx
        logs a request after its answer is out, so a client may see the answer first)."""
        deadline = time.monotonic() + timeout
        while True:
            lines = [line.split(" ") for line in self.text("access.log").splitlines() if line]
            if len(lines) >= count or time.monotonic() >= deadline:
                return lines
            time.sleep(0.01)
