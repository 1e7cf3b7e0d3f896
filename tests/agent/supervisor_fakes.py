"""Fakes for the supervisor's unit tests: a clock that only moves when told, a
launcher whose children exit when told, an in-memory journal, and a real
ROUTER link that records what the supervisor sends and lets a test hand it
reports as if a child had sent them."""

from __future__ import annotations

import os
import shutil
import tempfile
import textwrap
import threading

from agent.supervision.childlink import ChildLink
from agent.supervision.supervisor import Supervisor
from common import config as config_mod
from common.internal import HISTOGRAM_BOUNDS, worker_identity


class FakeClock:
    def __init__(self, t: float = 1000.0, wall: float = 1_700_000_000.0):
        self.t = t
        self.w = wall

    def monotonic(self) -> float:
        return self.t

    def wall(self) -> float:
        return self.w

    def advance(self, dt: float) -> None:
        self.t += dt
        self.w += dt


class FakeChild:
    """A child that exits when told; like a pidfd, its exit fd becomes readable when it does."""

    def __init__(self, pid: int, argv: list[str], stdin: bytes, name: str, exit_on_term: bool):
        self.pid = pid
        self.argv = argv
        self.stdin = stdin
        self.name = name
        self._code: int | None = None
        self.signals: list[str] = []
        self.exit_on_term = exit_on_term
        self._exit_r, self._exit_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._fds_lock = threading.Lock()  # the test's thread exits it while the loop's may release it

    @property
    def code(self) -> int | None:
        return self._code

    @code.setter
    def code(self, value: int | None) -> None:
        with self._fds_lock:
            if value is not None and self._exit_w >= 0:
                os.close(self._exit_w)  # end of file: readable from now on, as a pidfd of a dead process
                self._exit_w = -1
            self._code = value

    def poll(self) -> int | None:
        return self.code

    def exit_fd(self) -> int | None:
        return self._exit_r if self._exit_r >= 0 else None

    def release(self) -> None:
        """As a pidfd is closed once the supervisor's loop no longer polls it."""
        self.close_fds()

    def close_fds(self) -> None:
        with self._fds_lock:
            for fd in (self._exit_r, self._exit_w):
                if fd >= 0:
                    os.close(fd)
            self._exit_r = self._exit_w = -1

    def terminate(self) -> None:
        self.signals.append("TERM")
        if self.exit_on_term and self.code is None:
            self.code = 0

    def kill(self) -> None:
        self.signals.append("KILL")
        if self.code is None:
            self.code = -9

    def exit(self, code: int = 0) -> None:
        self.code = code

    @property
    def alive(self) -> bool:
        return self.code is None


class FakeLauncher:
    def __init__(self) -> None:
        self.children: list[FakeChild] = []
        self.next_pid = 4000
        self.fail_next: Exception | None = None
        self.exit_on_term = True

    def spawn(self, argv, stdin_bytes, name):
        if self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            raise exc
        self.next_pid += 1
        child = FakeChild(self.next_pid, argv, stdin_bytes, name, self.exit_on_term)
        self.children.append(child)
        return child

    def of(self, name: str) -> list[FakeChild]:
        """Every child spawned for NAME ('broker' or a sink name), oldest first."""
        label = "broker" if name == "broker" else f"worker {name}"
        return [c for c in self.children if c.name == label]

    def current(self, name: str) -> FakeChild:
        return self.of(name)[-1]


class FakeJournal:
    def __init__(self, path: str):
        self.path = path
        self.epoch = "0123456789abcdef"
        self.head_offset = 42
        self.cursor_rows: dict[str, int] = {}
        self.closed = False

    def head(self) -> int:
        return self.head_offset

    def ensure_cursor(self, sink: str) -> int:
        return self.cursor_rows.setdefault(sink, self.head_offset)

    def drop_cursors_except(self, names) -> None:
        keep = set(names)
        self.cursor_rows = {k: v for k, v in self.cursor_rows.items() if k in keep}

    def cursors(self) -> dict[str, int]:
        return dict(self.cursor_rows)

    def set_cursor(self, sink: str, offset: int) -> None:
        self.cursor_rows[sink] = offset

    def dead_letter_counts(self) -> dict[str, int]:
        return {}

    def close(self) -> None:
        self.closed = True


class RecordingLink(ChildLink):
    """The real ROUTER (bound, polled), with sends recorded and reports injectable."""

    def __init__(self, ctx, endpoint):
        super().__init__(ctx, endpoint)
        self.sent: list[tuple[bytes, dict]] = []
        self.inbox: list[tuple[bytes, dict]] = []
        self.unreachable: set[bytes] = set()

    def send(self, identity, msg):
        if identity in self.unreachable:
            return False
        self.sent.append((identity, msg))
        return True

    def receive(self, limit=1000):
        out, self.inbox = self.inbox, []
        return out + super().receive(limit)

    def to(self, sink: str, kind: str | None = None) -> list[dict]:
        ident = worker_identity(sink)
        return [m for i, m in self.sent if i == ident and (kind is None or m["type"] == kind)]


class TestSupervisor(Supervisor):
    __test__ = False  # not a pytest class

    def _make_link(self):
        return RecordingLink(self._ctx, self.paths.supervisor_endpoint)


def hist(values=()) -> dict:
    counts = [0] * len(HISTOGRAM_BOUNDS)
    for v in values:
        for i, b in enumerate(HISTOGRAM_BOUNDS):
            if v <= b:
                counts[i] += 1
                break
    cumulative, running = [], 0
    for c in counts:
        running += c
        cumulative.append(running)
    return {"buckets": cumulative, "sum": float(sum(values)), "count": len(list(values))}


def worker_report(sink: str, pid: int, publisher: str = "running", **fields) -> dict:
    msg = {
        "type": "report",
        "role": "worker",
        "sink": sink,
        "pid": pid,
        "publisher": publisher,
        "backlog": 0,
        "in_flight": 0,
        "delivered": 0,
        "failures": 0,
        "current_backoff": 0.0,
        "next_backoff": 1.0,
        "cursor": 0,
        "head": 0,
        "attempts": {},
        "post_duration": hist(),
        "event_age": hist(),
    }
    msg.update(fields)
    return msg


def broker_report(pid: int, **fields) -> dict:
    msg = {
        "type": "report",
        "role": "broker",
        "pid": pid,
        "received": 0,
        "rejected": {},
        "journal_bytes": 4096,
        "journal_full": False,
        "head": 0,
    }
    msg.update(fields)
    return msg


SINK_TOML = """
[[sink]]
name = "{name}"
url = "http://user:hunter2-pass@127.0.0.1:9/{name}"
locations = ["{location}"]
version = {version}
"""


def config_text(
    base: str, sinks=(("cdr", "Oslo", 2),), tuning: str = "", node_extra: str = "", agent_extra: str = ""
) -> str:
    text = textwrap.dedent(f"""
        [node]
        address = "10.44.99.2"
        location = "Oslo"
        {node_extra}

        [agent]
        runtime_dir = "{base}/run"
        state_dir = "{base}/state"
        metrics_listen = ""
        {agent_extra}

        [tuning]
        {tuning}
        """)
    for name, location, version in sinks:
        text += SINK_TOML.format(name=name, location=location, version=version)
    return text


class Rig:
    """One supervisor under test, started with fakes, in its own short temp dir."""

    def __init__(self, **config_kw):
        self.base = tempfile.mkdtemp(prefix="esa-", dir="/tmp")
        self.path = os.path.join(self.base, "agent.toml")
        self.write(**config_kw)
        self.clock = FakeClock()
        self.launcher = FakeLauncher()
        self.journals: list[FakeJournal] = []
        config = config_mod.load_or_raise(self.path)
        self.sup = TestSupervisor(
            self.path, config, launcher=self.launcher, clock=self.clock, journal_factory=self._journal, serve=False
        )

    def _journal(self, path):
        j = FakeJournal(path)
        self.journals.append(j)
        return j

    @property
    def journal(self) -> FakeJournal:
        return self.journals[-1]

    def write(self, text: str | None = None, **config_kw) -> None:
        with open(self.path, "w") as fh:
            fh.write(text if text is not None else config_text(self.base, **config_kw))

    def start(self) -> Rig:
        self.sup.start()
        return self

    @property
    def link(self) -> RecordingLink:
        return self.sup.link

    def step(self, n: int = 1) -> bool:
        done = False
        for _ in range(n):
            if self.link.inbox:  # reports handed in by the test: as if the ROUTER had become readable
                self.sup.loop.add_callback(self.sup._on_link)
            done = self.sup.step(block=False)
        return done

    def report(self, sink: str, publisher: str = "running", pid: int | None = None, **fields) -> None:
        pid = pid if pid is not None else self.launcher.current(sink).pid
        self.link.inbox.append((worker_identity(sink), worker_report(sink, pid, publisher, **fields)))
        self.step()

    def report_all(self, publisher: str = "running", **fields) -> None:
        """A report from every local sink's current worker."""
        for name in list(self.sup.fleet.sinks):
            self.report(name, publisher, **fields)

    def broker_report(self, **fields) -> None:
        self.link.inbox.append((b"broker", broker_report(self.launcher.current("broker").pid, **fields)))
        self.step()

    def ask(self, command: str, **params):
        future = self.sup.request(command, **params)
        self.step()
        return future.result(timeout=0)

    def slot(self, name: str):
        return self.sup.fleet.sinks[name]

    def sink_status(self, name: str) -> dict:
        return next(s for s in self.ask("status")["sinks"] if s["name"] == name)

    def __enter__(self) -> Rig:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.sup.close()
        for child in self.launcher.children:
            child.close_fds()
        shutil.rmtree(self.base, ignore_errors=True)
