"""The Prometheus metrics (docs/metrics.md is generated from `families`), built on each scrape from the
supervisor's state (a custom collector: nothing is registered globally).

Counters come from the children's reports, folded across child restarts by
agent/supervision/child.py (with agent/supervision/counters.py's counters) so that
they never go backwards; histograms from the HIST snapshots workers report; gauges
from the last report and the supervisor's own state. Labels carry only sink names, alarm names, reasons and outcomes:
never a URL, user name or secret.

`MetricsServer` serves them over HTTP from one thread that sleeps until a
scrape or stop() (prometheus_client's own server wakes twice a second to look
for a shutdown request, and an idle agent must not wake).
"""

from __future__ import annotations

import os
import selectors
import socket
import threading
from dataclasses import dataclass, field
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString

from agent.supervision.counters import HistFigures, WorkerCounters
from common.internal import HISTOGRAM_BOUNDS
from common.vocabulary import NODE_ALARMS, POST_OUTCOMES, REJECT_REASONS, SINK_ALARMS

# The label values known in advance (common/vocabulary.py), exported as 0 before they first happen.


@dataclass
class SinkView:
    name: str
    counters: WorkerCounters
    backlog: int = 0
    in_flight: int = 0
    retry_backoff: float = 0.0
    running: bool = False
    restarts: int = 0
    dead_letters: int = 0  # held now


@dataclass
class MetricsView:
    """What one scrape shows: a copy taken under the supervisor's lock."""

    sinks: list[SinkView] = field(default_factory=list)
    alarms: list[tuple[str, str | None]] = field(default_factory=list)  # (alarm name, sink or None)
    received: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    journal_bytes: int = 0
    journal_retained: int = 0


def _buckets(h: HistFigures) -> list[tuple[str, float]]:
    # A HIST may carry no buckets (an empty snapshot): zip stops at the shorter, as before.
    out = [(floatToGoString(bound), float(n)) for bound, n in zip(HISTOGRAM_BOUNDS, h.buckets, strict=False)]
    out.append(("+Inf", float(max(h.count, h.buckets[-1] if h.buckets else 0))))
    return out


def families(view: MetricsView) -> list:
    """Every metric family for VIEW (documented in docs/metrics.md: regenerate it after a change)."""
    sink = _sink_families(view)
    return [
        *_bus_families(view),
        sink["delivered"],
        sink["attempts"],
        sink["duration"],
        sink["age"],
        sink["backlog"],
        sink["in_flight"],
        sink["backoff"],
        sink["running"],
        alarm_family(view),
        sink["restarts"],
        *_journal_families(view),
        sink["dead_lettered"],
        sink["dead_held"],
    ]


def _bus_families(view: MetricsView) -> list:
    """The broker's: what the bus accepted, rejected (by reason) and dropped as duplicates."""
    received = CounterMetricFamily(
        "eventsink_bus_received", "Bus messages accepted and journaled.", value=view.received
    )
    rejected = CounterMetricFamily("eventsink_bus_rejected", "Bus messages rejected, by reason.", labels=["reason"])
    for reason in sorted(set(REJECT_REASONS) | set(view.rejected)):
        rejected.add_metric([reason], view.rejected.get(reason, 0))
    duplicates = CounterMetricFamily(
        "eventsink_bus_duplicates", "Numbered bus messages already journaled, dropped.", value=view.duplicates
    )
    return [received, rejected, duplicates]


def _journal_families(view: MetricsView) -> list:
    """The journal's: its size on disk and the delivered events it keeps for replay."""
    journal = GaugeMetricFamily("eventsink_journal_bytes", "Size of the journal on disk.", value=view.journal_bytes)
    retained = GaugeMetricFamily(
        "eventsink_journal_retained_events", "Delivered events kept for replay.", value=view.journal_retained
    )
    return [journal, retained]


def _sink_families(view: MetricsView) -> dict[str, CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily]:
    """The families labelled by sink, by short name, with one sample (set) per sink of VIEW."""
    f = _empty_sink_families()
    for s in view.sinks:
        c = s.counters
        f["delivered"].add_metric([s.name], c.delivered)
        for outcome in sorted(set(POST_OUTCOMES) | set(c.attempts)):
            f["attempts"].add_metric([s.name, outcome], c.attempts.get(outcome, 0))
        f["duration"].add_metric([s.name], _buckets(c.post_duration), c.post_duration.sum)
        f["age"].add_metric([s.name], _buckets(c.event_age), c.event_age.sum)
        f["backlog"].add_metric([s.name], s.backlog)
        f["in_flight"].add_metric([s.name], s.in_flight)
        f["backoff"].add_metric([s.name], s.retry_backoff)
        f["running"].add_metric([s.name], 1 if s.running else 0)
        f["restarts"].add_metric([s.name], s.restarts)
        f["dead_lettered"].add_metric([s.name], c.dead_lettered)
        f["dead_held"].add_metric([s.name], s.dead_letters)
    return f


def _empty_sink_families() -> dict[str, CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily]:
    return {
        "delivered": CounterMetricFamily(
            "eventsink_events_delivered",
            "Events acknowledged by a 2xx answer (bulk: each inner event).",
            labels=["sink"],
        ),
        "attempts": CounterMetricFamily("eventsink_post_attempts", "POSTs by outcome.", labels=["sink", "outcome"]),
        "duration": HistogramMetricFamily("eventsink_post_duration_seconds", "Time of one POST.", labels=["sink"]),
        "age": HistogramMetricFamily(
            "eventsink_event_age_seconds", "Time from publication to a 2xx answer.", labels=["sink"]
        ),
        "backlog": GaugeMetricFamily(
            "eventsink_backlog_events", "Events accepted for the sink, not yet delivered.", labels=["sink"]
        ),
        "in_flight": GaugeMetricFamily("eventsink_in_flight_posts", "POSTs under way.", labels=["sink"]),
        "backoff": GaugeMetricFamily(
            "eventsink_retry_backoff_seconds", "The sink's current retry wait, 0 when healthy.", labels=["sink"]
        ),
        "running": GaugeMetricFamily(
            "eventsink_publisher_running", "1 while the sink's publisher runs, 0 otherwise.", labels=["sink"]
        ),
        "restarts": CounterMetricFamily(
            "eventsink_worker_restarts",
            "Worker processes restarted by the supervisor after an unexpected exit.",
            labels=["sink"],
        ),
        "dead_lettered": CounterMetricFamily(
            "eventsink_dead_letters", "Events set aside as dead letters.", labels=["sink"]
        ),
        "dead_held": GaugeMetricFamily(
            "eventsink_dead_letter_events", "Dead letters the sink holds now.", labels=["sink"]
        ),
    }


def alarm_family(view: MetricsView) -> GaugeMetricFamily:
    """eventsink_alarm_active: every known alarm of every sink and of the node, 1 while raised."""
    alarm = GaugeMetricFamily("eventsink_alarm_active", "1 while that alarm is raised.", labels=["sink", "alarm"])
    active = set(view.alarms)
    for s in view.sinks:
        for name in SINK_ALARMS:
            alarm.add_metric([s.name, name], 1 if (name, s.name) in active else 0)
    for name in NODE_ALARMS:
        alarm.add_metric(["", name], 1 if (name, None) in active else 0)
    # An alarm of a kind this module does not know yet is still shown.
    known = {(n, s.name) for s in view.sinks for n in SINK_ALARMS} | {(n, None) for n in NODE_ALARMS}
    for name, sink in sorted(active - known, key=lambda a: (a[0], a[1] or "")):
        alarm.add_metric([sink or "", name], 1)
    return alarm


class AgentCollector:
    """A prometheus_client collector: `collect()` reads a fresh MetricsView each scrape."""

    def __init__(self, view_source):
        self._view_source = view_source

    def describe(self) -> list:
        return []  # names are dynamic per scrape; registering must not take a snapshot

    def collect(self):
        yield from families(self._view_source())


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args) -> None:  # `format`: the base class's parameter name
        pass  # a scrape every few seconds is not worth a log line


class MetricsServer:
    """/metrics on HOST:PORT, one thread per scrape; `stop()` ends it at once."""

    def __init__(self, host: str, port: int, registry) -> None:
        from prometheus_client.exposition import ThreadingWSGIServer, make_wsgi_app

        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        server_class = type("MetricsHTTPServer", (ThreadingWSGIServer,), {"address_family": family})
        self.httpd = make_server(host, port, make_wsgi_app(registry), server_class, handler_class=_QuietHandler)
        # A connection that goes away between poll and accept must not block the thread in accept().
        self.httpd.socket.setblocking(False)
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC)
        self._thread = threading.Thread(target=self._serve, name="metrics", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self.httpd.socket, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while True:
                ready = selector.select()
                if any(key.fd == self._wake_r for key, _ in ready):
                    return
                self.httpd._handle_request_noblock()  # accept one scrape, handled in its own thread

    def stop(self) -> None:
        os.write(self._wake_w, b"\0")
        self._thread.join(timeout=5)
        self.httpd.server_close()
        os.close(self._wake_r)
        os.close(self._wake_w)
