"""Row 12's machinery alone (tests/bench/ctl_cost.py), quicker than the whole smoke test: a real agent,
eventsinkctl status and curl --unix-socket timed alternately, and the rows and goal it makes. No
assert about speed, only that every run was timed and answered."""

from __future__ import annotations

from tests.bench import ctl_cost, report


def test_ctl_status_row_times_both_tools_against_one_agent():
    r = ctl_cost.ctl_status(2)
    for name in ("ctl", "curl", "python", "ctl_pip", "ctl_dev"):
        assert len(r[name]["runs_ms"]) == 2 and r[name]["median_ms"] > 0, r
    assert r["ratio"] > 0
    rows = {row.key: row for row in report._ctl_rows({"ctl_status": r})}
    assert set(rows) == {"ctl_status", "ctl_curl", "ctl_python", "ctl_status_ratio", "ctl_pip", "ctl_dev"}
    assert rows["ctl_status_ratio"].value == r["ratio"]
    assert report._ctl_rows({}) == []  # results saved before the row existed
