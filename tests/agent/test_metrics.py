"""The metrics collector: every docs/metrics.md name, type and label from the
supervisor's state, counters folded across worker restarts, histograms from
HIST snapshots, no secret anywhere; the text passes promtool."""

import shutil
import subprocess

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from common.vocabulary import AlarmName
from tests.agent.supervisor_fakes import Rig, hist

CONTRACT = {  # name (as the parser reports it) -> (type, labels)
    "eventsink_bus_received": ("counter", set()),
    "eventsink_bus_rejected": ("counter", {"reason"}),
    "eventsink_bus_duplicates": ("counter", set()),
    "eventsink_events_delivered": ("counter", {"sink"}),
    "eventsink_post_attempts": ("counter", {"sink", "outcome"}),
    "eventsink_post_duration_seconds": ("histogram", {"sink"}),
    "eventsink_event_age_seconds": ("histogram", {"sink"}),
    "eventsink_backlog_events": ("gauge", {"sink"}),
    "eventsink_in_flight_posts": ("gauge", {"sink"}),
    "eventsink_retry_backoff_seconds": ("gauge", {"sink"}),
    "eventsink_publisher_running": ("gauge", {"sink"}),
    "eventsink_alarm_active": ("gauge", {"sink", "alarm"}),
    "eventsink_worker_restarts": ("counter", {"sink"}),
    "eventsink_journal_bytes": ("gauge", set()),
    "eventsink_dead_letters": ("counter", {"sink"}),
    "eventsink_dead_letter_events": ("gauge", {"sink"}),
    "eventsink_journal_retained_events": ("gauge", set()),
}


@pytest.fixture
def rig():
    r = Rig(sinks=(("cdr", "Oslo", 2), ("siem", "Oslo", 1)))
    r.start()
    yield r
    r.close()


def scrape(rig) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(rig.sup.collector())
    return generate_latest(registry).decode()


def samples(text: str) -> dict:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(text, name, **labels):
    return samples(text).get((name, tuple(sorted(labels.items()))))


def test_every_contract_metric_with_its_type_labels_and_help(rig):
    rig.report("cdr", "running")
    fams = {f.name: f for f in text_string_to_metric_families(scrape(rig))}
    assert set(fams) == set(CONTRACT)
    for name, (kind, labels) in CONTRACT.items():
        fam = fams[name]
        assert fam.type == kind, name
        assert fam.documentation, name
        for s in fam.samples:
            assert set(s.labels) - {"le"} == labels, (name, s.labels)


def test_values_from_reports(rig):
    rig.report(
        "cdr",
        "running",
        backlog=7,
        in_flight=2,
        current_backoff=4.0,
        delivered=11,
        attempts={"success": 11, "http_error": 3},
        post_duration=hist([0.002, 0.2, 3.0]),
        event_age=hist([0.5]),
    )
    rig.broker_report(received=20, rejected={"invalid_json": 2}, journal_bytes=123456, retained=42, duplicates=5)
    text = scrape(rig)
    assert value(text, "eventsink_backlog_events", sink="cdr") == 7
    assert value(text, "eventsink_in_flight_posts", sink="cdr") == 2
    assert value(text, "eventsink_retry_backoff_seconds", sink="cdr") == 4.0
    assert value(text, "eventsink_events_delivered_total", sink="cdr") == 11
    assert value(text, "eventsink_post_attempts_total", sink="cdr", outcome="http_error") == 3
    assert value(text, "eventsink_post_attempts_total", sink="cdr", outcome="tls_error") == 0
    assert value(text, "eventsink_publisher_running", sink="cdr") == 1
    assert value(text, "eventsink_publisher_running", sink="siem") == 0
    assert value(text, "eventsink_bus_received_total") == 20
    assert value(text, "eventsink_bus_rejected_total", reason="invalid_json") == 2
    assert value(text, "eventsink_bus_rejected_total", reason="journal_full") == 0
    assert value(text, "eventsink_bus_duplicates_total") == 5
    assert value(text, "eventsink_journal_bytes") == 123456
    assert value(text, "eventsink_journal_retained_events") == 42
    assert value(text, "eventsink_post_duration_seconds_count", sink="cdr") == 3
    assert value(text, "eventsink_post_duration_seconds_bucket", sink="cdr", le="0.005") == 1
    assert value(text, "eventsink_post_duration_seconds_bucket", sink="cdr", le="0.25") == 2
    assert value(text, "eventsink_post_duration_seconds_bucket", sink="cdr", le="+Inf") == 3
    assert value(text, "eventsink_post_duration_seconds_sum", sink="cdr") == pytest.approx(3.202)
    assert value(text, "eventsink_event_age_seconds_count", sink="cdr") == 1


def test_counters_and_histograms_fold_across_worker_restarts(rig):
    rig.report("cdr", "running", delivered=5, attempts={"success": 5}, post_duration=hist([0.01] * 5))
    rig.launcher.current("cdr").exit(-9)
    rig.step()
    crashed = scrape(rig)
    assert value(crashed, "eventsink_events_delivered_total", sink="cdr") == 5
    rig.clock.advance(0.5)
    rig.step()
    rig.report("cdr", "running", delivered=2, attempts={"success": 2}, post_duration=hist([0.01, 0.01]))
    text = scrape(rig)
    assert value(text, "eventsink_events_delivered_total", sink="cdr") == 7
    assert value(text, "eventsink_post_attempts_total", sink="cdr", outcome="success") == 7
    assert value(text, "eventsink_post_duration_seconds_count", sink="cdr") == 7
    assert value(text, "eventsink_worker_restarts_total", sink="cdr") == 1
    # and across an operator restart, including what the old worker said while shutting down
    old = rig.launcher.current("cdr")
    rig.ask("restart", sink="cdr")
    rig.report("cdr", "running", pid=old.pid, delivered=4, attempts={"success": 4})
    assert value(scrape(rig), "eventsink_events_delivered_total", sink="cdr") == 9
    old.exit(0)
    rig.step()
    assert value(scrape(rig), "eventsink_events_delivered_total", sink="cdr") == 9
    rig.report("cdr", "running", delivered=1)
    assert value(scrape(rig), "eventsink_events_delivered_total", sink="cdr") == 10


def test_alarm_gauges_are_0_or_1_and_journal_full_has_an_empty_sink_label(rig):
    text = scrape(rig)
    assert value(text, "eventsink_alarm_active", sink="cdr", alarm=AlarmName.MAX_BACKOFF) == 0
    assert value(text, "eventsink_alarm_active", sink="", alarm=AlarmName.JOURNAL_FULL) == 0
    rig.report("cdr", "backoff_exceeded")
    rig.broker_report(journal_full=True)
    text = scrape(rig)
    assert value(text, "eventsink_alarm_active", sink="cdr", alarm=AlarmName.MAX_BACKOFF) == 1
    assert value(text, "eventsink_alarm_active", sink="cdr", alarm=AlarmName.MAX_CONCURRENT_POSTS) == 0
    assert value(text, "eventsink_alarm_active", sink="siem", alarm=AlarmName.MAX_BACKOFF) == 0
    assert value(text, "eventsink_alarm_active", sink="", alarm=AlarmName.JOURNAL_FULL) == 1
    assert value(text, "eventsink_publisher_running", sink="cdr") == 0


def test_no_secret_or_url_in_the_metrics(rig):
    rig.report("cdr", "running")
    text = scrape(rig)
    assert "hunter2-pass" not in text and "user" not in text and "127.0.0.1:9" not in text


def test_removed_sink_disappears(rig):
    rig.write(sinks=(("cdr", "Oslo", 2),))
    rig.ask("reload")
    assert 'sink="siem"' not in scrape(rig)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_accepts_the_exposition(rig):
    rig.report("cdr", "backoff_exceeded", attempts={"success": 1}, post_duration=hist([0.3]))
    rig.broker_report(received=3, rejected={"too_large": 1})
    text = scrape(rig)
    result = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == "", result.stdout + result.stderr
