"""HttpClient on the worker's loop (common/loop.py): libcurl's sockets as loop handlers, kept-alive
connections parked between POSTs, and one the server closes while idle. Real loop, real sockets on
127.0.0.1, a raw HTTP server that closes each connection once it has been idle for a moment."""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest

from common.config_types import TuningConfig
from common.loop import Loop
from sinks.http import HttpClient
from tests.sinks.harness import make_sink

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok"
IDLE_CLOSE = 0.2  # s the server keeps an idle connection open


class ClosingServer:
    """Answers every request on a connection with a 2xx, and closes the connection IDLE_CLOSE s after
    its last answer (as nginx's keepalive_timeout does)."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.closed = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        conn.settimeout(IDLE_CLOSE)
        data = b""
        try:
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
                while b"\r\n\r\n" in data:
                    head, _, rest = data.partition(b"\r\n\r\n")
                    length = next(
                        (
                            int(line.split(b":")[1])
                            for line in head.split(b"\r\n")
                            if line.lower().startswith(b"content-length:")
                        ),
                        0,
                    )
                    if len(rest) < length:
                        break
                    data = rest[length:]
                    conn.sendall(ANSWER)
        except TimeoutError:
            pass
        finally:
            conn.close()
            self.closed += 1

    def close(self):
        self.listener.close()


def peer_port(fd: int) -> int | None:
    """The peer's port of socket FD (None: not a TCP connection, such as libcurl's own wake-up fds)."""
    dup = os.dup(fd)
    try:
        s = socket.socket(fileno=dup)
    except OSError:  # not a socket at all (an eventfd, a pipe)
        os.close(dup)
        return None
    try:
        peer = s.getpeername()
    except OSError:
        return None
    finally:
        s.close()
    return peer[1] if isinstance(peer, tuple) else None


def run_until(loop: Loop, done, timeout: float = 5.0) -> int:
    """Turns of LOOP until DONE() (each waits at most 50 ms); returns how many it took."""
    deadline, turns = time.monotonic() + timeout, 0
    while not done():
        assert time.monotonic() < deadline, "timed out"
        loop.run_once(max_wait=0.05)
        turns += 1
    return turns


def test_a_kept_alive_connection_the_server_closes_while_idle_leaves_the_loop_and_the_next_post_reconnects():
    server = ClosingServer()
    loop = Loop()
    client = HttpClient(make_sink(f"http://127.0.0.1:{server.port}/events"), TuningConfig(), loop=loop)
    ended = []
    client.on_finished = lambda: ended.extend(client.finished())
    try:
        client.start(b"{}", "wh-1", "first")
        client.started()
        ended.extend(client.finished())
        run_until(loop, lambda: ended)
        assert [(token, r.status) for token, r in ended] == [("first", 200)]
        assert client.in_flight == 0 and not client.watched
        (connection,) = [fd for fd in client._parked if peer_port(fd) == server.port]  # kept alive, parked
        run_until(loop, lambda: server.closed == 1)
        run_until(loop, lambda: connection not in client._parked)  # the close was seen: out of the loop
        assert connection not in loop._handlers
        started = time.monotonic()
        turns = run_until(loop, lambda: time.monotonic() - started >= 0.3)
        assert turns <= 8  # each turn waited its 50 ms: no closed socket keeps the poll awake
        client.start(b"{}", "wh-2", "second")
        client.started()
        ended.extend(client.finished())
        run_until(loop, lambda: len(ended) == 2)
        assert [(token, r.status) for token, r in ended] == [("first", 200), ("second", 200)]
        assert server.connections == 2  # a new connection for the second POST
    finally:
        client.close()
        loop.close()
        server.close()


def test_posts_on_one_kept_alive_connection_reuse_its_loop_registration():
    server = ClosingServer()
    loop = Loop()
    client = HttpClient(make_sink(f"http://127.0.0.1:{server.port}/events"), TuningConfig(), loop=loop)
    ended = []
    client.on_finished = lambda: ended.extend(client.finished())
    try:
        for i in range(5):
            client.start(b"{}", f"wh-{i}", i)
            client.started()
            ended.extend(client.finished())
            run_until(loop, lambda n=i + 1: len(ended) == n)  # bound now: the loop variable moves on
        assert [token for token, r in ended] == list(range(5)) and all(r.ok for _, r in ended)
        assert server.connections == 1 and client.connects == 1
        (fd,) = [fd for fd in client._parked if peer_port(fd) == server.port]
        assert fd in loop._handlers  # the one connection, on the loop since the first POST
    finally:
        client.close()
        loop.close()
        server.close()
    assert not loop._handlers
    with pytest.raises(OSError):  # closed with the client, not leaked
        os.fstat(fd)
