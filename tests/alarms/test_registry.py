"""The registry of active alarms."""

from alarms.registry import AlarmRegistry, iso_utc
from common.vocabulary import AlarmName


def test_raise_is_idempotent_and_keeps_the_first_raise_time():
    reg = AlarmRegistry()
    first = reg.raise_alarm(AlarmName.MAX_BACKOFF, "cdr", "wait 64 s", wall=1_700_000_000.0)
    assert first is not None and first.raised_at == "2023-11-14T22:13:20.000Z"
    assert reg.raise_alarm(AlarmName.MAX_BACKOFF, "cdr", "wait 128 s", wall=1_700_000_100.0) is None
    assert reg.active() == [first]
    assert first.as_dict() == {
        "name": AlarmName.MAX_BACKOFF,
        "sink": "cdr",
        "raised_at": "2023-11-14T22:13:20.000Z",
        "detail": "wait 64 s",
    }


def test_alarms_are_per_sink_and_clear_sink_clears_only_that_sink():
    reg = AlarmRegistry()
    reg.raise_alarm(AlarmName.MAX_BACKOFF, "cdr", "", wall=0)
    reg.raise_alarm(AlarmName.MAX_CONCURRENT_POSTS, "cdr", "", wall=0)
    reg.raise_alarm(AlarmName.MAX_BACKOFF, "siem", "", wall=0)
    reg.raise_alarm(AlarmName.JOURNAL_FULL, None, "", wall=0)
    assert len(reg) == 4
    cleared = reg.clear_sink("cdr")
    assert sorted(a.name for a in cleared) == sorted([AlarmName.MAX_BACKOFF, AlarmName.MAX_CONCURRENT_POSTS])
    assert [(a.name, a.sink) for a in reg.active()] == [(AlarmName.MAX_BACKOFF, "siem"), (AlarmName.JOURNAL_FULL, None)]
    assert reg.for_sink(None)[0].name == AlarmName.JOURNAL_FULL
    assert reg.is_active(AlarmName.MAX_BACKOFF, "siem") and not reg.is_active(AlarmName.MAX_BACKOFF, "cdr")


def test_clear_one():
    reg = AlarmRegistry()
    reg.raise_alarm(AlarmName.JOURNAL_FULL, None, "full", wall=0)
    assert reg.clear(AlarmName.JOURNAL_FULL, None).detail == "full"
    assert reg.clear(AlarmName.JOURNAL_FULL, None) is None
    assert reg.active() == []


def test_iso_utc():
    assert iso_utc(0.25) == "1970-01-01T00:00:00.250Z"
