"""The agent's footprint on the file system: its directories, the two lock
files that keep a second agent off the same runtime_dir/state_dir (a second
agent binding the same ipc paths would silently steal them), the control
socket path check before binding, the socket files removed at exit, and
opening the journal (moving a corrupt one aside)."""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import stat

from common.config_types import Paths
from common.logs import SUPPORT

log = logging.getLogger("agent.supervisor")

DIR_MODE = 0o750
LOCK_MODE = 0o640


class StartupError(Exception):
    """The agent cannot start; the message is one plain sentence for the operator."""


def ensure_dir(path: str) -> None:
    """Create PATH (mode 0750); an existing one of ours loses any access for other users."""
    try:
        os.makedirs(path, mode=DIR_MODE, exist_ok=True)
    except OSError as exc:
        raise StartupError(f"cannot create directory {path}: {exc.strerror or exc}") from None
    st = os.stat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise StartupError(f"{path} exists and is not a directory")
    if st.st_uid == os.getuid() and st.st_mode & 0o007:
        os.chmod(path, stat.S_IMODE(st.st_mode) & ~0o007)
        log.info("removed other users' access to %s", path)


def socket_path_of(endpoint: str) -> str | None:
    return endpoint[len("ipc://") :] if endpoint.startswith("ipc://") else None


class RuntimeFiles:
    """Directories, locks and socket files of one agent (see docs/internals.md, 'Files and endpoints')."""

    def __init__(self, paths: Paths):
        self.paths = paths
        self._lock_fds: list[int] = []

    def prepare(self) -> None:
        """Directories, locks, control socket path: raises StartupError with one clear sentence."""
        p = self.paths
        ensure_dir(p.runtime_dir)
        self._lock(p.runtime_lock, "runtime_dir", p.runtime_dir)
        ensure_dir(p.state_dir)
        if os.path.realpath(p.state_lock) != os.path.realpath(p.runtime_lock):
            self._lock(p.state_lock, "state_dir", p.state_dir)
        parent = os.path.dirname(p.control_socket)
        if parent and not os.path.isdir(parent):
            ensure_dir(parent)
        self.check_control_socket(p.control_socket)

    def _lock(self, path: str, what: str, directory: str) -> None:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, LOCK_MODE)
        except OSError as exc:
            raise StartupError(f"cannot open lock file {path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = ""
            try:
                text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
                holder = f" (pid {text})" if text.isdigit() else ""
            except OSError:
                pass
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise StartupError(
                    f"another eventsink-agent is already running with {what} {directory}{holder}"
                ) from None
            raise StartupError(f"cannot lock {path}: {exc.strerror or exc}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fds.append(fd)

    @staticmethod
    def check_control_socket(path: str) -> None:
        """Refuse a path that is not a socket or that some process still serves; unlink a stale one of ours."""
        from agent.server.control import ControlSocketError, clear_stale_socket

        try:
            clear_stale_socket(path)
        except ControlSocketError as exc:
            raise StartupError(str(exc)) from None

    def remove_sockets(self, *, control: bool) -> None:
        """Unlink the ipc socket files of this agent, and the control socket when CONTROL (best effort)."""
        p = self.paths
        candidates = [p.control_socket if control else None] + [
            socket_path_of(ep) for ep in (p.supervisor_endpoint, p.fanout_endpoint, p.publish_endpoint)
        ]
        for path in candidates:
            if not path:
                continue
            try:
                if stat.S_ISSOCK(os.lstat(path).st_mode):
                    os.unlink(path)
            except OSError:
                pass

    def release(self) -> None:
        """Drop the locks (closing the files releases the flock)."""
        for fd in self._lock_fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self._lock_fds.clear()


def open_journal(path: str):
    """The journal, checked page by page; a corrupt one is moved aside and a new one started."""
    from bus.journal import JournalAdmin as Journal  # the supervisor's handle
    from bus.journal import JournalCorrupt, quarantine

    try:
        return Journal(path, verify=True)
    except JournalCorrupt as exc:
        why = str(exc)
    moved, lost = quarantine(path)
    logging.getLogger(SUPPORT).error(
        "%s: moved it aside as %s and started a new journal; %s",
        why,
        moved,
        "events it held that not every sink had are lost: how many is unknown"
        if lost is None
        else f"up to {lost} events it held that not every sink had are lost",
    )
    return Journal(path)
