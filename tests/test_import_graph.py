"""The packages never import each other in a circle: agent/ on top, common/ at the bottom,
and console/ a client above them all (it uses agent/'s control-socket client, as
eventsinkctl does), imported by none of them. tools/ (the test receiver, the
simulator, the demo) uses the product packages; none of them uses tools/, but
for agent/cli.py running the `receive` and `demo` commands on demand.

Walks every module's imports with `ast` (function-level imports included, since
a lazy import is still a dependency) and fails on any cycle between the
packages, naming it.
"""

from __future__ import annotations

import ast
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("agent", "alarms", "bus", "common", "console", "sinks", "tools")
CLIENTS = ("console",)  # above agent/: they reach the agent through its control socket only
TOOLS = "tools"  # above everything: it may import any package, no product package imports it
# `eventsink-agent receive` and `demo` are commands of the agent's CLI, so agent/cli.py names their
# modules; it imports them inside the command's function, so the agent never loads tools/ otherwise.
LAZY_TOOLS_IMPORTERS = ("agent/cli.py",)


def package_imports() -> dict[str, dict[str, set[str]]]:
    """package -> imported package -> the modules that import it."""
    graph: dict[str, dict[str, set[str]]] = {p: {} for p in PACKAGES}
    for package in PACKAGES:
        for name in sorted(os.listdir(os.path.join(REPO, package))):
            if not name.endswith(".py"):
                continue
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
        if package not in CLIENTS and package != TOOLS:
            assert "agent" not in graph[package], f"{package}/ imports agent/: {graph[package].get('agent')}"
        for client in CLIENTS:
            assert client not in graph[package], f"{package}/ imports {client}/: {graph[package].get(client)}"


def tools_references() -> dict[str, list[tuple[int, bool]]]:
    """Product module -> (line, inside a function?) of each import of tools/, importlib.import_module's included."""
    found: dict[str, list[tuple[int, bool]]] = {}

    def visit(node: ast.AST, module: str, in_function: bool) -> None:
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            targets = [node.module or ""] if node.level == 0 else []
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "import_module":
            targets = [a.value for a in node.args[:1] if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        else:
            targets = []
        if any(t.split(".")[0] == TOOLS for t in targets):
            found.setdefault(module, []).append((node.lineno, in_function))
        inner = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for child in ast.iter_child_nodes(node):
            visit(child, module, inner)

    for package in PACKAGES:
        if package == TOOLS:
            continue
        for name in sorted(n for n in os.listdir(os.path.join(REPO, package)) if n.endswith(".py")):
            with open(os.path.join(REPO, package, name), encoding="utf-8") as fh:
                visit(ast.parse(fh.read()), f"{package}/{name}", False)
    return found


def test_no_product_package_imports_tools_but_the_cli_on_demand():
    found = tools_references()
    assert set(found) <= set(LAZY_TOOLS_IMPORTERS), f"product modules importing tools/: {found}"
    at_load = {module: [line for line, lazy in refs if not lazy] for module, refs in found.items()}
    assert not any(at_load.values()), f"tools/ imported when the module loads (import it in the command): {at_load}"


def test_the_walk_sees_a_cycle():
    """The checker itself: a made-up graph with a circle is caught."""
    graph = {p: {} for p in PACKAGES}
    graph["bus"]["sinks"] = {"bus/x.py"}
    graph["sinks"]["bus"] = {"sinks/y.py"}
    assert find_cycle(graph) in (["bus", "sinks", "bus"], ["sinks", "bus", "sinks"])
