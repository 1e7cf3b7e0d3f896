"""The packages never import each other in a circle: agent/ on top, common/ at the bottom,
and console/ a client above them all (it uses agent/'s control-socket client, as
eventsinkctl does), imported by none of them.

Walks every module's imports with `ast` (function-level imports included, since
a lazy import is still a dependency) and fails on any cycle between the
packages, naming it.
"""

from __future__ import annotations

import ast
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("agent", "alarms", "bus", "common", "console", "sinks")
CLIENTS = ("console",)  # above agent/: they reach the agent through its control socket only


def modules_of(package: str) -> list[str]:
    """Every module of PACKAGE, its subpackages' too, as paths inside it."""
    found = []
    for root, dirs, names in os.walk(os.path.join(REPO, package)):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        found += [os.path.relpath(os.path.join(root, n), os.path.join(REPO, package)) for n in sorted(names) if n.endswith(".py")]
    return found


def package_imports() -> dict[str, dict[str, set[str]]]:
    """package -> imported package -> the modules that import it."""
    graph: dict[str, dict[str, set[str]]] = {p: {} for p in PACKAGES}
    for package in PACKAGES:
        for name in modules_of(package):
            path = os.path.join(REPO, package, name)
            with open(path, encoding="utf-8") as fh:
                tree = ast.parse(fh.read(), path)
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    targets = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    targets = [node.module]
                else:
                    continue
                for target in targets:
                    top = target.split(".")[0]
                    if top in PACKAGES and top != package:
                        graph[package].setdefault(top, set()).add(f"{package}/{name}")
    return graph


def find_cycle(graph: dict[str, dict[str, set[str]]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 on the path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in PACKAGES:
        if start not in state and (found := visit(start)):
            return found
    return None


def test_no_cycle_between_the_packages():
    graph = package_imports()
    cycle = find_cycle(graph)
    if cycle:
        edges = [f"{a} -> {b} ({', '.join(sorted(graph[a][b]))})" for a, b in zip(cycle, cycle[1:])]
        raise AssertionError("the packages import each other in a circle: " + "; ".join(edges))


def test_common_is_at_the_bottom_and_agent_at_the_top():
    graph = package_imports()
    assert graph["common"] == {}, f"common/ must import none of the other packages: {graph['common']}"
    for package in PACKAGES:
        if package not in CLIENTS:
            assert "agent" not in graph[package], f"{package}/ imports agent/: {graph[package].get('agent')}"
        for client in CLIENTS:
            assert client not in graph[package], f"{package}/ imports {client}/: {graph[package].get(client)}"


def test_the_walk_sees_a_cycle():
    """The checker itself: a made-up graph with a circle is caught."""
    graph = {p: {} for p in PACKAGES}
    graph["bus"]["sinks"] = {"bus/x.py"}
    graph["sinks"]["bus"] = {"sinks/y.py"}
    assert find_cycle(graph) in (["bus", "sinks", "bus"], ["sinks", "bus", "sinks"])
