"""A TCP fault proxy on 127.0.0.1 in front of a real receiver (a tiny toxiproxy).

Owns `FaultProxy`: passes bytes both ways, and on demand
- refuses connections (`refuse()`: the listening socket is closed, so a
  connect gets ECONNREFUSED; `accept()` listens again on the same port), or
- resets mid-response (`mode = "reset"`): the request reaches the receiver
  (which records it as delivered), the first RESET_AFTER bytes of its answer
  reach the agent, then the connection is reset (RST). The agent cannot know
  the event arrived, retries it, and the receiver sees a duplicate.
"""

from __future__ import annotations

import socket
import struct
import threading

RESET_AFTER = 9  # bytes of the answer passed on before the reset ("HTTP/1.1 ")
CHUNK = 65536


def _hard_close(sock: socket.socket) -> None:
    """Close with RST instead of FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class FaultProxy:
    def __init__(self, upstream_port: int, path: str = "/events"):
        self.upstream = ("127.0.0.1", upstream_port)
        self.path = path
        self.mode = "pass"  # "pass" or "reset"
        self.port = 0
        self.resets = 0
        self._listener: socket.socket | None = None
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._closed = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    def start(self) -> FaultProxy:
        self.accept()
        return self

    def accept(self) -> None:
        """Listen (again, on the same port)."""
        with self._lock:
            if self._listener is not None or self._closed:
                return
            ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            ls.bind(("127.0.0.1", self.port))
            ls.listen(64)
            self.port = ls.getsockname()[1]
            self._listener = ls
        threading.Thread(target=self._accept_loop, args=(ls,), daemon=True, name=f"proxy:{self.port}").start()

    def refuse(self) -> None:
        """Stop listening and drop every open connection: new connections are refused."""
        with self._lock:
            ls, self._listener = self._listener, None
            conns = list(self._conns)
        if ls is not None:
            try:
                ls.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            ls.close()
        for c in conns:
            _hard_close(c)

    def stop(self) -> None:
        self._closed = True
        self.refuse()

    def _accept_loop(self, ls: socket.socket) -> None:
        while True:
            try:
                client, _ = ls.accept()
            except OSError:
                return  # refuse() or stop() closed the listener
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
                upstream.settimeout(None)
                for sock in (client, upstream):  # pass each write on at once (no Nagle + delayed ACK)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                _hard_close(client)
                continue
            with self._lock:
                self._conns.update((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, answers: bool) -> None:
        try:
            while True:
                data = src.recv(CHUNK)
                if not data:
                    break
                if answers and self.mode == "reset":
                    dst.sendall(data[:RESET_AFTER])
                    self.resets += 1
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._conns.discard(src)
                self._conns.discard(dst)
            _hard_close(dst)
            _hard_close(src)
