"""Small helpers shared by test modules of different packages: the suite's one poll with a deadline
(`wait_until`), short temporary directories, log files read whole, fixtures that stop what they
started, a journal's size on disk and its sampled peak, and what a deduplicating bulk receiver keeps."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


@contextlib.contextmanager
def short_tmpdir() -> Iterator[str]:
    """A fresh directory under /tmp with a short path (Unix socket paths are limited to ~100 bytes), removed after."""
    d = tempfile.mkdtemp(prefix="esa-", dir="/tmp")
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def wait_until(
    pred: Callable[[], T],
    timeout: float = 10.0,
    what: str = "condition",
    *,
    interval: float = 0.05,
    retry_on: tuple[type[Exception], ...] = (Exception,),
) -> T:
    """Poll PRED every INTERVAL seconds until it returns a truthy value, which is returned, or TIMEOUT
    seconds have passed: then an AssertionError naming WHAT and the last exception PRED raised.
    An exception of a RETRY_ON class counts as "not yet" (an agent still starting refuses its
    socket, a file is not written yet); any other propagates at once (retry_on=() for none)."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while True:
        try:
            value = pred()
            if value:
                return value
        except retry_on as exc:
            last_exc = exc
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last_exc!r})" if last_exc else "")
    ) from last_exc


def read_log(path: str) -> str:
    """The whole text of the log file at PATH, or "" while it does not exist."""
    try:
        with open(path, errors="replace") as fh:
            return fh.read()
    except OSError:
        return ""


@contextlib.contextmanager
def stopped_after(make: Callable[..., Any]) -> Iterator[Callable[..., Any]]:
    """A factory for a fixture: what MAKE(*args, **kw) starts is kept and stopped (.stop()) when the block ends."""
    started = []

    def start(*args: Any, **kw: Any) -> Any:
        thing = make(*args, **kw)
        started.append(thing)
        return thing

    try:
        yield start
    finally:
        for thing in started:
            thing.stop()


def journal_disk_bytes(path: str) -> int:
    """The journal at PATH on disk: its database file plus its WAL."""
    return sum(os.path.getsize(path + s) for s in ("", "-wal") if os.path.exists(path + s))


class Sampler:
    """The journal's size on disk (database + WAL), read every few ms from a thread: its peak."""

    def __init__(self, path: str):
        self.path = path
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.002):
            try:
                self.peak = max(self.peak, journal_disk_bytes(self.path))
            except OSError:
                pass  # a file replaced between exists() and getsize()

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def dedupe_bulk(requests) -> tuple[dict[str, list[tuple[str, str]]], list[str], int]:
    """What a receiver deduplicating bulk POSTs on `webhook-id` keeps, from the 2xx REQUESTS of a
    `tools.receiver.Receiver`: (webhook-id -> the events it stores under it, as (event, data as
    canonical JSON), in arrival order; what is wrong: ids that came again holding other events or
    in another order, envelopes that mix lifecycle and journal events; how many POSTs were repeats
    of an id already stored)."""
    import json

    stored: dict[str, list[tuple[str, str]]] = {}
    broken: list[str] = []
    repeats = 0
    for req in list(requests):
        if getattr(req, "problem", None) is not None or not 200 <= req.status < 300:
            continue
        body = json.loads(req.body)
        if body.get("event") != "eventsink_bulk":
            broken.append(f"not a bulk POST: {body.get('event')}")
            continue
        wid = req.headers["webhook-id"]
        inner = [(e["event"], json.dumps(e["data"], sort_keys=True)) for e in body["data"]]
        lifecycle = {name.startswith("eventsink_") for name, _ in inner}
        if len(lifecycle) > 1:
            broken.append(f"{wid}: lifecycle and journal events share it")
        if wid in stored:
            repeats += 1
            if stored[wid] != inner:
                broken.append(f"{wid}: came again with {len(inner)} events, first with {len(stored[wid])}")
            continue
        stored[wid] = inner
    return stored, broken, repeats


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRODUCT = ("agent", "alarms", "bus", "common", "console", "sinks", "tools", "packaging")  # what ships


def product_modules() -> list[str]:
    """Every .py file of the product directories that exist here, relative to the repository."""
    found = []
    for top in PRODUCT:
        for folder, dirs, files in os.walk(os.path.join(REPO, top)):
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__pycache__" and d != "build")
            found += [os.path.relpath(os.path.join(folder, f), REPO) for f in sorted(files) if f.endswith(".py")]
    return found
