"""Ending the ingress connections at a graceful stop without losing what is on them.

A bare PUB keeps writing into its connection to the broker; whatever it wrote that the
broker has not read when the broker closes the connection is gone (zmq_close and zmq_unbind
are asynchronous: what the I/O thread reads after our last recv, and what is still in the
kernel's buffer when it closes, is dropped with the connection). Measured at 500 events/s:
1 to 277 events lost in about one graceful restart in ten, more under CPU load (a sender
that stalled catches up in bursts of ZeroMQ's 8 KiB write batch).

So the broker makes the publisher end the connection instead: it half-closes each accepted
connection for writing (shutdown(SHUT_WR) on the socket ZeroMQ holds, reached through
/proc/self/fd). The PUB reads end-of-file, closes its side and keeps queueing for the next
broker (its pipe outlives the connection); what it wrote before that is still readable here,
ZeroMQ's I/O thread reads it to the end, passes it on and then closes its descriptor. Once
every such descriptor is gone, everything the publishers wrote is in the socket's queue.
First the socket file is unlinked, so a publisher's reconnection finds nothing until the
next broker binds. The broker's side writes nothing after its READY_TOPIC withdrawal (no
heartbeats are configured), so the half-close never turns into a write error.

ipc endpoints (the agent's default and only documented kind) only; for others `accepted`
finds nothing and the stop is as before. Linux only, like the agent.
"""

from __future__ import annotations

import array
import fcntl
import os
import socket
import termios
import time

_FD_DIR = "/proc/self/fd"
DRAINED_WAIT_SECONDS = 0.5  # at most, per connection, for ZeroMQ to have read what is in the kernel
DRAINED_POLL_SECONDS = 0.001


def ipc_address(endpoint: str) -> str | None:
    """The AF_UNIX address of an ipc:// ENDPOINT as getsockname() reports it (abstract: a NUL first)."""
    if not endpoint.startswith("ipc://"):
        return None
    name = endpoint[len("ipc://") :]
    return "\0" + name[1:] if name.startswith("@") else name


def _link(fd: int) -> str | None:
    try:
        return os.readlink(f"{_FD_DIR}/{fd}")
    except OSError:
        return None


def _is_connection_of(fd: int, address: str) -> bool:
    """True for an accepted (not listening) AF_UNIX stream socket bound to ADDRESS."""
    try:
        sock = socket.socket(fileno=os.dup(fd))
    except OSError:
        return False
    try:
        return (
            sock.family == socket.AF_UNIX
            and sock.type == socket.SOCK_STREAM
            and sock.getsockname() == address
            and not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        )
    except OSError:
        return False
    finally:
        sock.close()  # the duplicate only: ZeroMQ's descriptor stays


def accepted(endpoint: str) -> dict[int, str]:
    """The descriptors of this process's accepted connections on ENDPOINT: fd -> its socket's
    identity (`socket:[inode]`), to tell when ZeroMQ has closed it."""
    address = ipc_address(endpoint)
    if address is None:
        return {}
    found = {}
    for name in os.listdir(_FD_DIR):
        fd = int(name)
        link = _link(fd)
        if link is not None and link.startswith("socket:") and _is_connection_of(fd, address):
            found[fd] = link
    return found


def stop_accepting(endpoint: str) -> None:
    """Unlink ENDPOINT's socket file: a publisher reconnecting now finds nothing (and keeps
    queueing) until the next broker binds. The listener itself goes when the socket closes."""
    address = ipc_address(endpoint)
    if address and not address.startswith("\0"):
        try:
            os.unlink(address)
        except OSError:
            pass


def _unread_bytes(sock: socket.socket) -> int:
    size = array.array("i", [0])
    fcntl.ioctl(sock.fileno(), termios.FIONREAD, size)
    return size[0]


def _half_close(sock: socket.socket) -> None:
    """Wait (bounded) until ZeroMQ's I/O thread has read what the kernel holds for SOCK, then
    shut its writing side. Why wait: a publisher whose socket buffer is full has part of a write
    batch taken out of its queue; if it reads end-of-file before it could write the rest, that
    part is gone. With the buffer empty its pending write goes through first (libzmq handles a
    socket's writability before its end-of-file), and 200 KiB cannot fill up again meanwhile."""
    deadline = time.monotonic() + DRAINED_WAIT_SECONDS
    while _unread_bytes(sock) and time.monotonic() < deadline:
        time.sleep(DRAINED_POLL_SECONDS)  # ZeroMQ's I/O thread reads it; nothing to wake us
    sock.shutdown(socket.SHUT_WR)


def end_writing(connections: dict[int, str]) -> None:
    """Half-close each of CONNECTIONS for writing: its publisher reads end-of-file and closes."""
    for fd, link in connections.items():
        if _link(fd) != link:
            continue  # already closed by ZeroMQ (and the number perhaps reused)
        try:
            sock = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue
        try:
            _half_close(sock)
        except OSError:
            pass
        finally:
            sock.close()


def still_open(connections: dict[int, str]) -> bool:
    """Whether ZeroMQ still holds any of CONNECTIONS (it closes one once it has read it to the end)."""
    return any(_link(fd) == link for fd, link in connections.items())
