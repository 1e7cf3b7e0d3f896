"""A sink worker's graceful stop: what happens between leaving its loop and exiting.

Owns the shutdown path of sinks/worker.py: in-flight POSTs get a short grace, the one stop-event
attempt (`eventsink_stopped`/`eventsink_ended`, best effort), the last cursor commit and report,
and the alarm that forces an exit when all that takes longer than the supervisor will wait.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from typing import Protocol

from common import internal, logs
from common.vocabulary import PublisherState, stop_event
from sinks.http import Timeouts
from sinks.shaping import wrap

log = logging.getLogger("sinks.worker")

IN_FLIGHT_GRACE = 1.0  # s in-flight POSTs get at shutdown
STOP_EVENT_TIMEOUT = (1.0, 1.5)  # s (connect, read) of the one stop-event attempt


class Stopping(Protocol):
    """What the stop needs of a worker (sinks/worker.py's Worker; named here so neither module imports
    the other's importer)."""

    name: str
    config: object
    sink: object
    dispatcher: object
    shaper: object
    batcher: object
    tracker: object
    committed: int
    stop_event_asked: bool

    def commit(self) -> None: ...

    def report(self, now: float) -> None: ...


def shut_down(worker: Stopping) -> None:
    """Stop the worker's publisher gracefully, within the supervisor's CHILD_GRACE."""
    signal.signal(signal.SIGALRM, lambda *_: _force_exit(worker.name))
    signal.setitimer(signal.ITIMER_REAL, internal.CHILD_GRACE - 0.5)
    dispatcher = worker.dispatcher
    running = dispatcher.state == PublisherState.RUNNING
    dispatcher.close()
    if not dispatcher.wait_idle(IN_FLIGHT_GRACE):
        log.info(
            "sink %s: leaving %d POSTs in flight at shutdown (they stay in the journal)",
            worker.name,
            dispatcher.in_flight,
        )
    if worker.stop_event_asked and running:  # what ended went to the worker's acknowledger at once
        _send_stop_event(worker)
    if worker.tracker.cursor > worker.committed:
        worker.commit()
    worker.report(time.monotonic())
    log.info("sink %s: stopped (cursor %d)", worker.name, worker.committed)


def _send_stop_event(worker: Stopping) -> None:
    tuning, sink, dispatcher = worker.config.tuning, worker.sink, worker.dispatcher
    # Events queued, unsent or failed go back to the journal and get new seqs after the next
    # start; the stop event follows the last seq a receiver may have seen, so it sees no gap.
    worker.shaper.seq = dispatcher.last_seq_out()
    post = worker.shaper.lifecycle(stop_event(sink.version), time.monotonic())
    if worker.batcher is not None:
        post = wrap([post], sink.version)
    timeout = Timeouts(
        connect=min(tuning.connection_timeout, STOP_EVENT_TIMEOUT[0]),
        response=min(tuning.response_timeout, STOP_EVENT_TIMEOUT[1]),
    )
    result = dispatcher.send_once(post, timeout)
    if not result.ok:
        logging.getLogger(logs.SUPPORT).warning(
            "sink %s: stop event not delivered: %s: %s", worker.name, result.outcome, result.detail
        )


def _force_exit(name: str) -> None:
    log.warning("sink %s: shutdown took too long; exiting now (undelivered events stay in the journal)", name)
    logging.shutdown()
    os._exit(0)
