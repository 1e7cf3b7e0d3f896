"""What the supervisor does with the children's reports: turning a worker's
report into its publisher state and sink alarms (stopping the publisher of a
sink in alarm, with stop_publisher resent while the worker still says it
runs), a broker report into the journal alarm, and keeping each worker's
config up to date (an `update` it missed is sent on its next report); a
worker's answer to `attempts` or `deliveries` goes to the request waiting
for it (agent/server/actions/attempts.py), and the POSTs a followed worker streams
to the followers (agent/server/deliveries_feed.py).

The one place a link message becomes a typed report or answer is
`common.link.parse_message`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import msgspec

from agent.server.actions.attempts import AttemptAsks
from agent.server.deliveries_feed import DeliveryFeed
from agent.supervision.child import SinkChild
from agent.supervision.fleet import Fleet
from agent.supervision.states import STOPPABLE_STATES, ChildState
from alarms import rules
from alarms.registry import AlarmRegistry
from common import config as config_mod
from common.config_types import Config, ConfigError
from common.http_options import credentials_digest
from common.internal import BROKER_IDENTITY, worker_identity
from common.link import (
    AttemptsAnswer,
    BrokerReport,
    Deliveries,
    DeliveriesAnswer,
    DeliveriesStreamed,
    WorkerReport,
    parse_message,
)
from common.logs import SUPPORT
from common.vocabulary import AlarmName, PublisherState

log = logging.getLogger("agent.supervisor")
support = logging.getLogger(SUPPORT)

S = ChildState
STOP_RESEND_INTERVAL = 1.0  # s between two stop_publisher to a worker that still says its publisher runs


def worker_view(config: Config, name: str) -> tuple:
    """The parts of the config a sink's worker runs with."""
    return (config.node, config.tuning, config.sink_named(name))


class WorkerReports:
    """Reports in, publisher states, alarms and config updates out (for the supervisor's loop).

    FLEET holds the children and, once bound, the supervisor link (`fleet.link`); CONFIG
    answers the current config (a reload replaces it); CLOCK has monotonic() and wall()."""

    def __init__(self, fleet: Fleet, alarms: AlarmRegistry, clock, config: Callable[[], Config]) -> None:
        self.fleet = fleet
        self.alarms = alarms
        self.clock = clock
        self._config = config
        self.attempts = AttemptAsks(fleet, clock)  # `attempts` requests waiting for a worker's answer
        self.deliveries = AttemptAsks(fleet, clock, Deliveries, "deliveries")  # the same for `deliveries`
        self.feed = DeliveryFeed(fleet)  # GET /v1/deliveries?follow=1: its followers

    @property
    def config(self) -> Config:
        return self._config()

    # ---------------------------------------------------------------- reports

    def on_message(self, identity: bytes, msg: dict) -> None:
        link = self.fleet.link
        try:
            report = parse_message(msg)
        except ValueError as exc:
            link.note_bad(identity, str(exc)[:200])
            return
        if isinstance(report, AttemptsAnswer):
            self.attempts.answered(identity, report)
            return
        if isinstance(report, DeliveriesAnswer):
            self.deliveries.answered(identity, report)
            return
        if isinstance(report, DeliveriesStreamed):
            self.feed.streamed(identity, report)
            return
        if isinstance(report, BrokerReport):
            if identity == BROKER_IDENTITY:
                self.on_broker_report(report)
            return
        if identity != worker_identity(report.sink):
            link.note_bad(identity, f"report for sink {report.sink[:64]!r} from another identity")
            return
        child = self.fleet.sink_or_removed(report.sink)
        if child is not None:
            self.on_worker_report(child, report)

    def on_worker_report(self, child: SinkChild, r: WorkerReport) -> None:
        if child.take_report(r) != "current" or child.removed or self.fleet.stopping is not None:
            return
        if (r.pid, r.dead_lettered, r.redriven) != child.dead_letters_seen:
            child.dead_letters_seen = (r.pid, r.dead_lettered, r.redriven)
            if r.dead_lettered or r.redriven:
                self.refresh_dead_letters()
        now = self.clock.monotonic()
        self.bring_config_up_to_date(child)
        self.feed.on_report(child, r)
        tuning = self.config.tuning
        if not child.backlog_armed and rules.backlog_arms(r.backlog, tuning.max_background_posts):
            child.backlog_armed = True
        for decision in rules.sink_alarms(
            publisher=r.publisher,
            backlog=r.backlog,
            next_backoff=r.next_backoff,
            max_retry_backoff=tuning.max_retry_backoff,
            max_background_posts=tuning.max_background_posts,
            backlog_armed=child.backlog_armed,
        ):
            self.raise_sink_alarm(child, decision, now)
        if child.state is S.STARTING:
            active = self.alarms.for_sink(child.name)
            if active:
                self.stop_publisher(child, f"alarm {active[0].name} is still active", now)
            elif r.publisher == PublisherState.RUNNING:
                child.change_state(S.RUNNING, "the worker reports its publisher running", now)
        elif child.state is S.STOPPED and r.publisher == PublisherState.RUNNING:
            if child.stop_sent_at is None or now - child.stop_sent_at >= STOP_RESEND_INTERVAL:
                self.send_stop_publisher(child, now)
        child.stop_resend.set(self.stop_resend_at(child))

    def refresh_dead_letters(self) -> None:
        """Each sink's count of held dead letters, read from the journal: at start, when a worker
        reports one set aside or a redriven one delivered, after a redrive or a discard."""
        try:
            counts = self.fleet.journal.dead_letter_counts()
        except Exception as exc:  # sqlite3.Error: the figure stays as it was until the next change
            log.warning("cannot count the dead letters: %s", exc)
            return
        for name, child in self.fleet.sinks.items():
            child.dead_letters = counts.get(name, 0)

    def on_broker_report(self, r: BrokerReport) -> None:
        broker = self.fleet.broker
        if not broker.take_report(r):
            return
        if broker.state is S.STARTING:
            broker.change_state(S.RUNNING, "the broker reports", self.clock.monotonic())
        decision = rules.journal_alarm(
            journal_full=r.journal_full, journal_bytes=r.journal_bytes, max_journal_mb=self.config.agent.max_journal_mb
        )
        alarms = self.alarms
        if decision is not None:
            if alarms.raise_alarm(decision.name, None, decision.detail, wall=self.clock.wall()):
                support.error("alarm raised: %s: %s", decision.name, decision.detail)
        elif alarms.clear(AlarmName.JOURNAL_FULL, None):
            support.warning("alarm cleared: %s: the journal accepts events again", AlarmName.JOURNAL_FULL)

    # ---------------------------------------------------------------- alarms and publishers

    def raise_sink_alarm(self, child: SinkChild, decision: rules.Decision, now: float) -> None:
        if self.alarms.raise_alarm(decision.name, child.name, decision.detail, wall=self.clock.wall()) is None:
            return
        stopping = child.state in STOPPABLE_STATES
        support.error(
            "alarm raised: %s for sink %s: %s; %s",
            decision.name,
            child.name,
            decision.detail,
            "stopping its publisher" if stopping else f"publisher already {child.state}",
        )
        if stopping:
            self.stop_publisher(child, f"alarm {decision.name}", now)

    def stop_publisher(self, child: SinkChild, reason: str, now: float) -> None:
        child.change_state(S.STOPPED, reason, now)
        self.send_stop_publisher(child, now)

    def send_stop_publisher(self, child: SinkChild, now: float) -> None:
        child.stop_sent_at = now
        child.stop_resend.set(self.stop_resend_at(child))
        if not self.fleet.link.send(worker_identity(child.name), {"type": "stop_publisher"}):
            log.warning(
                "sink %s: stop_publisher could not be sent (worker not connected); retrying on its next report",
                child.name,
            )

    @staticmethod
    def stop_resend_at(child: SinkChild) -> float | None:
        """When a stop_publisher is due again: the worker's last report still says its publisher runs."""
        if (
            child.state is S.STOPPED
            and child.handle is not None
            and child.stop_sent_at is not None
            and child.report is not None
            and child.report.publisher == PublisherState.RUNNING
        ):
            return child.stop_sent_at + STOP_RESEND_INTERVAL
        return None

    def on_deadlines(self) -> None:
        """Each turn of the supervisor: resend what is due, fail the requests whose worker went or
        was too slow, and forget the followers that ended. Their deadlines are timers of the loop
        (each child's stop_resend, AttemptAsks), which wake the supervisor for this."""
        self.resend_stops()
        now = self.clock.monotonic()
        self.attempts.expire(now)
        self.deliveries.expire(now)
        self.feed.prune()

    def resend_stops(self) -> None:
        now = self.clock.monotonic()
        for child in self.fleet.sinks.values():
            due = self.stop_resend_at(child)
            if due is not None and now >= due:
                self.send_stop_publisher(child, now)
            else:
                child.stop_resend.set(due)  # gone when the worker's publisher no longer runs

    # ---------------------------------------------------------------- config updates

    def worker_spec(self, child: SinkChild) -> bytes:
        """What a new worker of CHILD starts with; records it as what the worker was given."""
        config = self.config
        resolved = config_mod.resolve_secrets(config)
        # A sink with an active alarm stays stopped across a worker crash: its new worker
        # must not send (not even eventsink_started) before the supervisor could stop it.
        spec = config_mod.encode_spec(resolved, child.name, paused=bool(self.alarms.for_sink(child.name)))
        child.given_view = worker_view(config, child.name)
        child.given_digest = child.wanted_digest = credentials_digest(resolved.sink_named(child.name))
        return spec

    def bring_config_up_to_date(self, child: SinkChild) -> None:
        """Send an update a worker missed (e.g. a reload while it was still connecting)."""
        view = worker_view(self.config, child.name)
        if child.given_view != view or child.given_digest != child.wanted_digest:
            announce = child.given_view is None or child.given_view[2] != child.config
            self.send_update(child, announce=announce or child.given_digest != child.wanted_digest)

    def send_update(self, child: SinkChild, *, announce: bool) -> None:
        if child.handle is None:
            return  # the next worker starts from the new config
        config = self.config
        try:
            resolved = config_mod.resolve_secrets(config)
        except ConfigError as exc:
            log.error("sink %s: update not sent: %s", child.name, exc)
            return
        msg = {"type": "update", "config": msgspec.to_builtins(resolved), "announce": announce}
        if self.fleet.link.send(worker_identity(child.name), msg):
            child.given_view = worker_view(config, child.name)
            child.given_digest = child.wanted_digest = credentials_digest(resolved.sink_named(child.name))
