"""The packages never import each other in a circle: agent/ on top, common/ at the bottom,
and console/ a client above them all (it uses agent/'s control-socket client, as
eventsinkctl does), imported by none of them. tools/ (the test receiver, the
simulator, the demo) uses the product packages; none of them uses tools/, but
for agent/cli.py running the `receive` and `demo` commands on demand.

Walks every module's imports with `ast` (function-level imports included, since
a lazy import is still a dependency) and fails on any cycle between the
packages, naming it; and on any circle between modules, within a package or
across, through any path (a module importing one that imports it back, also
through a package's __init__), naming its members and one way round it.
The test modules too: none imports another test module (what they share lives
in a conftest.py or a helpers module: tests/helpers.py, tests/*/harness.py, ...).
"""

from __future__ import annotations

import ast
import itertools
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("agent", "alarms", "bus", "common", "console", "sinks", "tools")
CLIENTS = ("console",)  # above agent/: they reach the agent through its control socket only
TOOLS = "tools"  # above everything: it may import any package, no product package imports it
# `eventsink-agent receive` and `demo` are commands of the agent's CLI, so agent/cli.py names their
# modules; it imports them inside the command's function, so the agent never loads tools/ otherwise.
LAZY_TOOLS_IMPORTERS = ("agent/cli.py",)


def modules_of(package: str) -> list[str]:
    """Every module of PACKAGE, its subpackages' too, as paths inside it."""
    found = []
    for root, dirs, names in os.walk(os.path.join(REPO, package)):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        found += [
            os.path.relpath(os.path.join(root, n), os.path.join(REPO, package))
            for n in sorted(names)
            if n.endswith(".py")
        ]
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
                return path[path.index(nxt) :] + [nxt]
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
        edges = [f"{a} -> {b} ({', '.join(sorted(graph[a][b]))})" for a, b in itertools.pairwise(cycle)]
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


# ------------------------------------------------------------ modules

ModuleGraph = dict[str, dict[str, set[int]]]  # module -> imported module -> the lines that import it


def module_files() -> dict[str, str]:
    """Every module of the packages (those of PACKAGES that exist here), subpackages included:
    dotted name -> path (a package by its __init__.py)."""
    modules: dict[str, str] = {}
    for package in PACKAGES:
        root = os.path.join(REPO, package)
        for folder, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if os.path.exists(os.path.join(folder, d, "__init__.py")))
            dotted = os.path.relpath(folder, REPO).replace(os.sep, ".")
            for name in sorted(files):
                if name.endswith(".py"):
                    stem = name[:-3]
                    modules[dotted if stem == "__init__" else f"{dotted}.{stem}"] = os.path.join(folder, name)
    return modules


def imported_names(module: str, path: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The dotted names NODE imports, relative imports resolved against MODULE (its file is PATH):
    `import a.b` names a.b; `from a import n` names a (its __init__) and a.n (which counts only
    where it is a module)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        package = module if os.path.basename(path) == "__init__.py" else module.rpartition(".")[0]
        parts = package.split(".")
        base = ".".join(parts[: len(parts) - (node.level - 1)] + ([node.module] if node.module else []))
    else:
        base = node.module or ""
    return [base] + [f"{base}.{alias.name}" for alias in node.names]


def module_imports(modules: dict[str, str] | None = None) -> ModuleGraph:
    """module -> the modules of the packages it imports, at module level or in a function."""
    modules = module_files() if modules is None else modules
    graph: ModuleGraph = {m: {} for m in modules}
    for module, path in modules.items():
        with open(path, encoding="utf-8") as fh:
            tree = ast.parse(fh.read(), path)
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in imported_names(module, path, node):
                    if target in modules and target != module:
                        graph[module].setdefault(target, set()).add(node.lineno)
    return graph


def import_circles(graph: dict[str, dict[str, object]]) -> list[list[str]]:
    """The modules that import each other in a circle, through any path: each strongly connected
    component of more than one module (Tarjan), sorted, components in order of their first member."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return sorted(circles)


def circle_path(graph: dict[str, dict[str, object]], members: list[str]) -> list[str]:
    """A shortest way round the circle of MEMBERS, from its first member back to it (breadth first)."""
    start, inside = members[0], set(members)
    parent: dict[str, str | None] = {start: None}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph[node]):
                if nxt == start:
                    path = [node]
                    while (up := parent[path[-1]]) is not None:
                        path.append(up)
                    return [*reversed(path), start]
                if nxt in inside and nxt not in parent:
                    parent[nxt] = node
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"no way round {members}")


def describe_circle(graph: ModuleGraph, files: dict[str, str], members: list[str]) -> str:
    """The circle's members, then one way round it with the file and lines of each import."""
    path = circle_path(graph, members)
    steps = [
        f"{a} -> {b} ({os.path.relpath(files[a], REPO)}:{','.join(map(str, sorted(graph[a][b])))})"
        for a, b in itertools.pairwise(path)
    ]
    return "{" + ", ".join(members) + "}: " + "; ".join(steps)


def test_no_module_imports_a_module_that_imports_it():
    files = module_files()
    graph = module_imports(files)
    circles = import_circles(graph)
    assert not circles, "modules that import each other in a circle:\n" + "\n".join(
        describe_circle(graph, files, members) for members in circles
    )


def test_the_module_walk_resolves_imports_and_finds_each_circle_once():
    """The finder itself, on a tiny made-up package: relative imports, `from pkg import name`
    (pkg/__init__ and the module pkg.name), a circle of three through a package __init__, one of
    two through a function-level import, and a chain that is no circle."""
    tree = ast.parse("from . import b\nfrom .c import thing\nimport p.q.r\n\ndef later():\n    from p import d\n")
    names = [
        n
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for n in imported_names("p.a", "p/a.py", node)
    ]
    assert names == ["p", "p.b", "p.c", "p.c.thing", "p.q.r", "p", "p.d"]
    assert imported_names("p", "p/__init__.py", ast.parse("from .a import x").body[0]) == ["p.a", "p.a.x"]
    assert imported_names("p.q.r", "p/q/r.py", ast.parse("from ..s import t").body[0]) == ["p.s", "p.s.t"]
    graph = {
        "p": {"p.a": 1},
        "p.a": {"p.b": 1},
        "p.b": {"p": 1, "p.c": 1},
        "p.c": {"p.d": 1},
        "p.d": {"p.c": 1},
        "p.e": {"p.a": 1, "p.c": 1},
    }
    assert import_circles(graph) == [["p", "p.a", "p.b"], ["p.c", "p.d"]]
    assert circle_path(graph, ["p", "p.a", "p.b"]) == ["p", "p.a", "p.b", "p"]
    assert circle_path(graph, ["p.c", "p.d"]) == ["p.c", "p.d", "p.c"]
    del graph["p.b"]["p"], graph["p.d"]["p.c"]
    assert import_circles(graph) == []


def test_no_module_of_the_suite_imports_a_test_module():
    """A test module imported by another runs its imports there, and hides what the tests share:
    shared code lives in a conftest.py or a helpers module (a file not named test_*.py), which
    imports no test module either."""
    tests = os.path.join(REPO, "tests")
    found = []
    for folder, dirs, files in os.walk(tests):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__")))
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            module = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
            with open(path, encoding="utf-8") as fh:
                tree = ast.parse(fh.read(), path)
            for node in ast.walk(tree):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    targets = imported_names(module, path, node)
                    if isinstance(node, ast.ImportFrom):  # `from tests.x import name`: a module only if test_*
                        targets = targets[:1] + [t for t in targets[1:] if t.rpartition(".")[2].startswith("test_")]
                    found += [
                        f"{os.path.relpath(path, REPO)}:{node.lineno} imports {t}"
                        for t in targets
                        if t.startswith("tests.") and t.rpartition(".")[2].startswith("test_")
                    ]
    assert not found, "test modules imported:\n" + "\n".join(found)
