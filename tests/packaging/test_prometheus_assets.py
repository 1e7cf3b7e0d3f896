"""Prometheus alert rules (promtool check + unit tests) and the Grafana dashboard:
both may only use the metric names of the contract (docs/metrics.md)."""

from __future__ import annotations

import json
import os
import re

from tests.packaging.conftest import need_tool, sh
from tests.packaging.harness import ASSETS, CONTRACT_METRICS, DASHBOARD, dashboard_exprs

RULES = os.path.join(ASSETS, "eventsink-agent.rules.yml")
RULES_TEST = os.path.join(ASSETS, "eventsink-agent.rules.test.yml")
ALARMS = ("Eventsink Reached Maximum Backoff", "Eventsink Reached Maximum Concurrent POSTs", "Eventsink Journal Full")


def metric_names(text: str) -> set[str]:
    """Every eventsink_* series name in TEXT, histogram suffixes folded into their family."""
    names = set()
    for name in re.findall(r"\beventsink_[a-z0-9_]+", text):
        for suffix in ("_bucket", "_sum", "_count"):
            family = name[: -len(suffix)]
            if name.endswith(suffix) and CONTRACT_METRICS.get(family) == "histogram":
                name = family
        names.add(name)
    return names


def test_promtool_checks_the_rules():
    need_tool("promtool", "prometheus")
    out = sh(["promtool", "check", "rules", RULES]).stdout
    assert "SUCCESS" in out


def test_promtool_unit_tests_of_the_rules_pass():
    need_tool("promtool", "prometheus")
    proc = sh(["promtool", "test", "rules", RULES_TEST], cwd=ASSETS)
    assert "SUCCESS" in proc.stdout


def test_rules_cover_every_alarm_and_use_only_contract_metrics():
    with open(RULES, encoding="utf-8") as fh:
        text = fh.read()
    assert metric_names(text) <= set(CONTRACT_METRICS), metric_names(text) - set(CONTRACT_METRICS)
    for alarm in ALARMS:
        assert f'eventsink_alarm_active{{alarm="{alarm}"}} == 1' in text, alarm
    assert "eventsink_publisher_running == 0" in text
    assert "deriv(eventsink_backlog_events[10m]) > 0 and eventsink_backlog_events > 0" in text
    assert 'rate(eventsink_post_attempts_total{outcome!="success"}[5m])' in text
    assert "eventsink_dead_letter_events > 0" in text and "increase(eventsink_dead_letters_total[15m])" in text


def test_the_dashboard_shows_delivery_backlog_failures_latency_and_alarms():
    exprs = dashboard_exprs()
    joined = "\n".join(exprs)
    assert metric_names(joined) <= set(CONTRACT_METRICS), metric_names(joined) - set(CONTRACT_METRICS)
    assert any("rate(eventsink_events_delivered_total" in e and "by (instance, sink)" in e for e in exprs)
    assert any("eventsink_backlog_events" in e for e in exprs)
    assert any("eventsink_post_attempts_total" in e and "outcome" in e for e in exprs)
    for q in ("0.5", "0.99"):
        assert any(f"histogram_quantile({q}," in e and "eventsink_event_age_seconds_bucket" in e for e in exprs), q
    assert any("eventsink_alarm_active" in e and "sink" in e and "alarm" in e for e in exprs)
    assert any("eventsink_dead_letter_events" in e for e in exprs)
    assert any("eventsink_journal_retained_events" in e for e in exprs)
    with open(DASHBOARD, encoding="utf-8") as fh:
        dash = json.load(fh)
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    assert {v["name"] for v in dash["templating"]["list"]} == {"datasource", "instance", "sink"}
