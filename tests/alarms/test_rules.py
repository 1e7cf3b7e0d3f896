"""The alarm rules, as pure functions."""

from alarms import rules
from common.vocabulary import AlarmName


def decide(**kw):
    args = dict(
        publisher="running",
        backlog=0,
        next_backoff=2.0,
        max_retry_backoff=1800,
        max_background_posts=1000,
        backlog_armed=True,
    )
    args.update(kw)
    return [d.name for d in rules.sink_alarms(**args)]


def test_healthy_report_raises_nothing():
    assert decide() == []
    assert decide(publisher="paused", backlog=1000) == []


def test_backoff_exceeded_raises_max_backoff_with_the_wait_in_the_detail():
    [d] = rules.sink_alarms(
        publisher="backoff_exceeded",
        backlog=0,
        next_backoff=2048.0,
        max_retry_backoff=1800,
        max_background_posts=1000,
        backlog_armed=True,
    )
    assert d.name == AlarmName.MAX_BACKOFF
    assert "2048 s" in d.detail and "1800 s" in d.detail


def test_backlog_strictly_above_the_limit_raises_concurrency_alarm():
    assert decide(backlog=1000) == []
    assert decide(backlog=1001) == [AlarmName.MAX_CONCURRENT_POSTS]


def test_unarmed_backlog_rule_stays_quiet_until_the_backlog_was_within_the_limit():
    assert decide(backlog=5000, backlog_armed=False) == []
    assert not rules.backlog_arms(1001, 1000)
    assert rules.backlog_arms(1000, 1000)


def test_both_alarms_at_once():
    assert decide(publisher="backoff_exceeded", backlog=2000) == [AlarmName.MAX_BACKOFF, AlarmName.MAX_CONCURRENT_POSTS]


def test_journal_alarm_raises_and_clears():
    d = rules.journal_alarm(journal_full=True, journal_bytes=1048576 * 1024, max_journal_mb=1024)
    assert d.name == AlarmName.JOURNAL_FULL and "1024.0 MiB" in d.detail
    assert rules.journal_alarm(journal_full=False, journal_bytes=10, max_journal_mb=1024) is None
