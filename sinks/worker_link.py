"""A sink worker's side of the supervisor link (docs/internals.md, "Supervisor link").

Owns what the worker tells the supervisor and how it takes the supervisor's commands: the
figures whose change makes a report due, the backlog, the `WorkerReport` itself, and the
dispatch of each command to what obeys it (the worker's stop, update and publisher stop; the
attempts and deliveries rings answer for themselves), and the stream of POSTs as sent to a
follower. When a report goes out (on change, at
most once per REPORT_INTERVAL, and the heartbeat) is the worker's loop timers' (sinks/worker.py).
"""

from __future__ import annotations

import os
import time
from typing import Protocol

from common import internal
from common.link import Attempts, StopPublisher, Update, WorkerReport
from sinks import attempts, deliveries


class Linked(Protocol):
    """What the link needs of a worker (sinks/worker.py's Worker; named here so neither module imports
    the other's importer)."""

    name: str
    config: object
    link: object
    dispatcher: object
    tracker: object
    dead_letters: object
    head: int
    next_offset: int
    committed: int

    def stop_publisher(self) -> None: ...

    def update(self, raw_config, announce: bool) -> None: ...

    def request_stop(self, stop_event: bool = False) -> None: ...

    _stream_due: object


def backlog(worker: Linked) -> int:
    """Events not yet done: those in memory plus those still only in the journal."""
    return worker.tracker.undone + max(0, worker.head - worker.next_offset + 1)


def figures(worker: Linked) -> tuple:
    """What a report tells, in short: a new report is due when this changes."""
    d = worker.dispatcher
    return (
        d.state,
        backlog(worker),
        d.in_flight,
        d.counts.delivered,
        d.counts.failures,
        d.backoff.failures,
        worker.committed,
        worker.head,
        worker.dead_letters.set_aside,
        worker.dead_letters.redriven,
        d.counts.sent.following,
    )


def report_of(worker: Linked) -> WorkerReport:
    """The worker's report as it stands now."""
    dispatcher = worker.dispatcher
    return WorkerReport(
        sink=worker.name,
        pid=os.getpid(),
        publisher=dispatcher.state,
        backlog=backlog(worker),
        cursor=worker.committed,  # the durable cursor
        head=worker.head,
        dead_lettered=worker.dead_letters.set_aside,
        redriven=worker.dead_letters.redriven,
        streaming=dispatcher.counts.sent.following,
        **dispatcher.snapshot(),
    )


def obey(worker: Linked, command) -> None:
    """Hand one command of the supervisor to what carries it out."""
    if isinstance(command, StopPublisher):
        worker.stop_publisher()
    elif isinstance(command, Update):
        worker.update(command.config, command.announce)
    elif isinstance(command, Attempts):  # formatted only now, never per attempt
        answer = attempts.answer(worker.dispatcher.counts.recent, command, worker.name, worker.config)
        internal.send_nowait(worker.link, answer)
    elif isinstance(command, deliveries.COMMANDS):  # the POSTs as sent: formatted only now, or streamed
        deliveries.obey(command, worker.dispatcher.counts.sent, worker.link, worker.name, worker.config)
        arm_stream(worker)
    else:
        worker.request_stop(command.stop_event)


def stream(worker: Linked) -> None:
    """The POSTs sent since the last message, to a follower once they are due (`deliveries_streamed`)."""
    now = time.monotonic()
    sent = worker.dispatcher.counts.sent
    if sent.fresh and now >= sent.stream_at:  # someone follows
        deliveries.stream(worker.link, sent, worker.name, worker.config, now)
    arm_stream(worker)


def arm_stream(worker: Linked) -> None:
    sent = worker.dispatcher.counts.sent
    if sent.fresh:
        worker._stream_due.at(sent.stream_at)
