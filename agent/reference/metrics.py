"""docs/metrics.md, generated from the metric families of agent/supervision/metrics.py.

Owns collecting one scrape of a sample node (one sink, every alarm and reason
known in advance) and describing each family from it: the name a scrape
shows, its type, its labels with the values known in advance, and its help.
Taking everything from `families()` itself means the document cannot name a
metric, label or value the agent does not export.
"""

from __future__ import annotations

from agent.supervision.counters import WorkerCounters
from agent.supervision.metrics import MetricsView, SinkView, families

SAMPLE_SINK = "SINK"
# Labels whose values are open-ended: the document names what they hold instead of listing them.
OPEN_LABELS = {"sink": "the sink's name"}

INTRO = """\
# Metrics

Generated from `agent/supervision/metrics.py` by `python -m agent.reference --write`: do not edit by hand.

Served in the Prometheus text format at `http://{metrics_listen}/metrics` (`[agent] metrics_listen`,
default `127.0.0.1:9712`), built afresh on every scrape from the supervisor's state. Counters never
go backwards across worker restarts. Labels carry only sink names, alarm names, reasons and
outcomes: never a URL, user name or secret. Every value listed below is exported (as 0) before it
first happens, so a dashboard or an alert can rely on the series existing.
"""


def exposed_name(family) -> str:
    """The name a scrape shows: a counter family gains `_total`."""
    return f"{family.name}_total" if family.type == "counter" else family.name


def label_values(family) -> dict[str, list[str]]:
    """Each label of the family (histogram `le` aside) -> its values in the sample scrape."""
    values: dict[str, list[str]] = {}
    for sample in family.samples:
        for label, value in sample.labels.items():
            if label == "le":
                continue
            seen = values.setdefault(label, [])
            if value not in seen:
                seen.append(value)
    return values


def label_cell(values: dict[str, list[str]]) -> str:
    if not values:
        return ""
    parts = []
    for label, seen in values.items():
        if label in OPEN_LABELS:
            shown = OPEN_LABELS[label] + (" (empty: a node's own alarm)" if "" in seen else "")
        else:
            shown = ", ".join(f"`{v}`" for v in sorted(seen))
        parts.append(f"`{label}`: {shown}")
    return "<br>".join(parts)


def metrics_markdown() -> str:
    """The text of docs/metrics.md."""
    view = MetricsView(sinks=[SinkView(SAMPLE_SINK, WorkerCounters())])
    rows = ["| metric | type | labels | help |", "| --- | --- | --- | --- |"]
    for family in families(view):
        help_text = family.documentation.replace("|", "\\|")
        rows.append(f"| `{exposed_name(family)}` | {family.type} | {label_cell(label_values(family))} | {help_text} |")
    notes = (
        "Histograms (`_bucket`, `_sum`, `_count`) share their bounds with the workers' reports "
        "(`common.internal.HISTOGRAM_BOUNDS`).\n"
    )
    return INTRO + "\n" + "\n".join(rows) + "\n\n" + notes
