"""Former home of the per-child bookkeeping (now agent/child.py and
agent/reports.py). Only these names remain, for agent/metrics.py, which
another branch is editing; drop this module once it imports agent.reports."""

from agent.reports import HistFigures, WorkerCounters

__all__ = ["HistFigures", "WorkerCounters"]
