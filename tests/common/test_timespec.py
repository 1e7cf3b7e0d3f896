"""TIME as operators write it (replay --since): numbers, ISO 8601, ages; one plain sentence otherwise."""

from __future__ import annotations

import pytest

from common.timespec import iso_utc, parse_time

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    "given, seconds",
    [
        (1_700_000_000, 1_700_000_000.0),
        (1_700_000_000.5, 1_700_000_000.5),
        ("1700000000", 1_700_000_000.0),
        ("2026-12-01T08:00:00Z", 1_796_112_000.0),
        ("2026-12-01T09:00:00+01:00", 1_796_112_000.0),
        ("2026-12-01T08:00:00", 1_796_112_000.0),  # no offset: UTC
        ("90s", NOW - 90),
        ("30m", NOW - 1800),
        ("2h", NOW - 7200),
        ("1d", NOW - 86400),
        ("1h30m", NOW - 5400),
        (" 2H ", NOW - 7200),
    ],
)
def test_usable_times(given, seconds):
    assert parse_time(given, NOW) == seconds


@pytest.mark.parametrize("given", ["", "yesterday", "2h5", "-5", -1, float("nan"), float("inf"), 1e20, True, None, [1]])
def test_unusable_times_are_one_plain_sentence(given):
    with pytest.raises(ValueError) as err:
        parse_time(given, NOW)
    message = str(err.value)
    assert message.startswith("TIME must be") and "\n" not in message


def test_iso_utc_round_trips_with_milliseconds():
    assert iso_utc(1_796_112_000.25) == "2026-12-01T08:00:00.250Z"
    assert parse_time(iso_utc(1_796_112_000.25), NOW) == 1_796_112_000.25
