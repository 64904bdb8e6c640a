"""The import graph of the project's own modules: no cycles, layers import one way, at the top.

Layers, lowest first: ``vaes`` (the library), ``launch`` (executors, arrays, requeue),
``benchmarks`` (suites, reports, speed), ``sweeps`` (Optuna studies). A module may import its
own layer and the layers below it, never one above.
"""
from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest
from tests.conftest import REPO

LAYERS = ("vaes", "launch", "benchmarks", "sweeps")


def modules() -> dict[str, Path]:
    """Dotted name -> file of every module of the project's packages."""
    found = {}
    for package in LAYERS:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def project_imports(path: Path, known: set[str]) -> list[tuple[str, int, bool]]:
    """(imported project module, line, at module level?) of every import in ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from vaes import run` imports the module vaes.run when there is one
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module
                     for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:  # `import vaes.variants.beta` counts as that module
                name = name.rpartition(".")[0]
            if name:
                found.append((name, node.lineno, id(node) in top))
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    # explicit imports only: the implicit "vaes.x needs vaes/__init__" is left out, since a package's
    # __init__ importing its own modules (vaes, vaes.variants) is how registries fill themselves
    return {name: {m for m, _, _ in project_imports(path, set(mods)) if m != name} for name, path in mods.items()}


def test_the_graph_sees_the_known_edges():
    g = graph()  # a checker that finds nothing would pass everything below
    assert "vaes.fit" in g["vaes.run"] and "vaes.run" in g["benchmarks.suite"]
    assert "launch.executors" in g["sweeps.launcher"] and "benchmarks.report" in g["sweeps.launcher"]


def test_no_import_cycle_between_the_projects_modules():
    g = graph()
    try:
        tuple(graphlib.TopologicalSorter(g).static_order())
    except graphlib.CycleError as e:
        pytest.fail(f"import cycle: {' -> '.join(e.args[1])}")


def test_layers_import_one_way():
    rank = {layer: i for i, layer in enumerate(LAYERS)}
    upward = [f"{src} imports {dst}" for src, dsts in graph().items() for dst in dsts
              if rank[dst.split(".")[0]] > rank[src.split(".")[0]]]
    assert not upward, "a lower layer imports a higher one:\n" + "\n".join(upward)


def test_project_modules_are_imported_at_the_top():
    mods = modules()
    hidden = [f"{path.relative_to(REPO)}:{line} imports {name} inside a function"
              for path in mods.values() for name, line, at_top in project_imports(path, set(mods))
              if not at_top]
    assert not hidden, "\n".join(hidden)


def _function_level_imports(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every import inside a function (at any depth, under if/try/with too)."""
    text = path.read_text()
    lines, found = text.splitlines(), []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)) and in_function:
                found.append((child.lineno, lines[child.lineno - 1]))
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(ast.parse(text, filename=str(path)), False)
    return found


def _says_why(lines: list[str], lineno: int) -> bool:
    """The import on ``lineno`` (1-based) has a comment on its line, or opens, with the imports
    right under it, below a line that is only a comment."""
    if "#" in lines[lineno - 1]:
        return True
    i = lineno - 2
    while i >= 0 and lines[i].strip().startswith(("import ", "from ")):
        if "#" in lines[i]:
            return True
        i -= 1
    return i >= 0 and lines[i].strip().startswith("#")


def test_imports_inside_functions_say_why():
    """Any import (a library's too) sits at the top of its module, unless it is heavy or optional
    and a comment beside it says so."""
    silent = []
    for package in (*LAYERS, "tests"):
        for path in sorted((REPO / package).rglob("*.py")):
            lines = path.read_text().splitlines()
            silent += [f"{path.relative_to(REPO)}:{n}: {text.strip()}"
                       for n, text in _function_level_imports(path) if not _says_why(lines, n)]
    assert not silent, "imports inside functions without a reason beside them:\n" + "\n".join(silent)
