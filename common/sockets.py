"""Plain-socket helpers shared by the HTTP servers in this project (the control
socket, agent/server/control.py, and the test receiver, tools/receiver.py).

Owns `drop_connections`: ending every open connection of a server at once, so
that the threads serving them return from their blocking reads.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterable


def drop_connections(connections: Iterable[socket.socket], lock: threading.Lock) -> None:
    """Shut down (both ways) each of CONNECTIONS, read under LOCK; one already gone is skipped.

    Only shuts them down: each is closed by the thread that serves it."""
    with lock:
        conns = list(connections)
    for conn in conns:
        try:
            conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
