"""The supervisor, the broker and the sink worker share the one loop (common/loop.py,
docs/internals.md "One event loop per process"): each builds a `Loop`, and no
product module but common/loop.py makes a `zmq.Poller` of its own or takes over
the signal wake-up fd. A process that grew its own poller (and with it its own
list of deadlines) would fail here, naming the module and line."""

from __future__ import annotations

import ast
import os

from tests.helpers import REPO, product_modules

LOOP_MODULE = "common/loop.py"
PROCESSES = ("agent/supervision/supervisor.py", "bus/broker.py", "sinks/worker.py")


def calls(path: str) -> list[tuple[int, str]]:
    """(line, dotted name) of every call in the module at PATH, e.g. (12, "zmq.Poller")."""
    with open(os.path.join(REPO, path), encoding="utf-8") as fh:
        tree = ast.parse(fh.read(), path)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            parts = []
            target = node.func
            while isinstance(target, ast.Attribute):
                parts.append(target.attr)
                target = target.value
            if isinstance(target, ast.Name):
                parts.append(target.id)
                found.append((node.lineno, ".".join(reversed(parts))))
    return found


def test_each_process_builds_the_one_loop():
    for path in PROCESSES:
        names = {name for _, name in calls(path)}
        assert "Loop" in names or "loop.Loop" in names, f"{path} does not build common.loop.Loop"


def test_no_module_but_the_loop_polls_or_takes_the_signal_wakeup_fd():
    offenders = []
    for path in product_modules():
        if path == LOOP_MODULE:
            continue
        for line, name in calls(path):
            if name in ("zmq.Poller", "Poller", "signal.set_wakeup_fd", "set_wakeup_fd"):
                offenders.append(f"{path}:{line} {name}")
    assert not offenders, "a poller or wake-up fd of its own (use common.loop.Loop):\n" + "\n".join(offenders)


def test_the_checks_see_a_poller():
    """The walk itself: a module that makes a Poller is seen (so the check above can fail)."""
    assert any(name == "zmq.Poller" for _, name in calls(LOOP_MODULE))
