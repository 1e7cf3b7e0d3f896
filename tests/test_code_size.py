"""The size limits of the product code: no module over 500 lines, no function over 50 lines
(from its `def` line to its last, decorators left out; methods and nested functions count on
their own). Product code is every module of agent, alarms, bus, common, console, sinks, tools
and packaging (the tests are not held to it)."""

from __future__ import annotations

import ast
import os

from tests.helpers import REPO, product_modules

MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 50


def long_functions(source: str, max_lines: int) -> list[tuple[int, str, int]]:
    """(line, name, length) of each function or method of SOURCE longer than MAX_LINES."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            if length > max_lines:
                found.append((node.lineno, node.name, length))
    return sorted(found)


def read(path: str) -> str:
    with open(os.path.join(REPO, path), encoding="utf-8") as fh:
        return fh.read()


def test_the_walk_sees_the_product():
    modules = product_modules()
    for expected in (
        "agent/supervision/supervisor.py",
        "common/config.py",
        "sinks/worker.py",
        "packaging/build_deb.py",
    ):
        assert expected in modules
    assert not [m for m in modules if m.startswith("tests/")]


def test_no_product_module_is_over_500_lines():
    over = [(path, n) for path in product_modules() if (n := len(read(path).splitlines())) > MAX_MODULE_LINES]
    assert not over, f"modules over {MAX_MODULE_LINES} lines: " + ", ".join(f"{p} ({n})" for p, n in over)


def test_no_product_function_is_over_50_lines():
    over = [
        f"{path}:{line} {name} ({length} lines)"
        for path in product_modules()
        for line, name, length in long_functions(read(path), MAX_FUNCTION_LINES)
    ]
    assert not over, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(over)


def test_a_function_is_measured_from_its_def_to_its_last_line_without_decorators():
    """50 lines with two decorators above fit; a method of 53 lines does not, nor its nested function of 51."""

    def lines(indent: str, n: int) -> str:
        return "".join(f"{indent}x{i} = {i}\n" for i in range(n))

    source = (
        "@decorator\n@another(1)\ndef fits():\n"
        + lines("    ", 49)
        + "\n\nclass C:\n    def over(self):\n        def inner():\n"
        + lines("            ", 50)
        + "        return 1\n"
    )
    assert long_functions(source, 50) == [(56, "over", 53), (57, "inner", 51)]
    assert long_functions(source, 51) == [(56, "over", 53)]
