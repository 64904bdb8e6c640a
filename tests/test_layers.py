"""The import graph of the project's own modules: no cycles, layers import one way, at the top.

Layers, lowest first: ``vaes`` (the library), ``launch`` (executors, arrays, requeue),
``benchmarks`` (suites, reports, speed), ``sweeps`` (Optuna studies). A module may import its
own layer and the layers below it, never one above.
"""
from __future__ import annotations

import ast
import graphlib
import re
import tomllib
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


# ---- size limits: a module a reader takes in at once, a function that fits a screen or two
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 100
MAX_NOQA = 5  # suppressions in the product; each says why on its line


def test_product_modules_and_functions_stay_short():
    long_modules, long_functions = [], []
    for name, path in modules().items():
        text = path.read_text()
        n = len(text.splitlines())
        if n > MAX_MODULE_LINES:
            long_modules.append(f"{path.relative_to(REPO)}: {n} lines")
        for node in ast.walk(ast.parse(text, filename=str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                span = node.end_lineno - (node.decorator_list[0].lineno if node.decorator_list else node.lineno) + 1
                if span > MAX_FUNCTION_LINES:
                    long_functions.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name}: {span} lines")
    assert len(modules()) > 20  # the walk sees the project
    assert not long_modules, f"modules over {MAX_MODULE_LINES} lines (split them):\n" + "\n".join(long_modules)
    assert not long_functions, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(long_functions)


def test_few_noqa_suppressions_each_with_its_reason():
    found = [(path, n, line) for path in modules().values()
             for n, line in enumerate(path.read_text().splitlines(), 1) if "noqa" in line]
    assert len(found) <= MAX_NOQA, (f"{len(found)} noqa suppressions in the product (at most {MAX_NOQA}):\n"
                                    + "\n".join(f"{p.relative_to(REPO)}:{n}" for p, n, _ in found))
    # the reason: words after the code(s), e.g. "# noqa: BLE001 -- one broken run must not stop a suite"
    bare = [f"{p.relative_to(REPO)}:{n}" for p, n, line in found
            if not re.search(r"noqa(: [A-Z]+[0-9]+(, ?[A-Z]+[0-9]+)*)?\W+\w+\W+\w+", line.split("#", 1)[-1])]
    assert not bare, "noqa without its reason on the line:\n" + "\n".join(bare)


def _lower_bound(spec: str) -> tuple[int, ...]:
    """(3, 11) from '>=3.11'."""
    m = re.fullmatch(r"\s*>=\s*(\d+(?:\.\d+)*)\s*", spec)
    assert m, f"requires-python {spec!r}: expected a '>=X.Y' lower bound"
    return tuple(int(x) for x in m.group(1).split("."))


def test_tomllib_imports_agree_with_requires_python():
    """tomllib is in the standard library from Python 3.11: the lowest Python pyproject.toml admits
    must have it, and no fallback to tomli (not a dependency) may hide a gap."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    users = [p for p in (*modules().values(), *(REPO / "tests").rglob("*.py"))
             if re.search(r"^\s*import tomllib\b", p.read_text(), re.M)]
    assert users, "nothing imports tomllib: this test checks nothing (update it)"
    assert _lower_bound(project["requires-python"]) >= (3, 11), \
        f"{', '.join(str(p.relative_to(REPO)) for p in users)} import tomllib, which Python < 3.11 lacks"
    fallbacks = [str(p.relative_to(REPO)) for p in (*modules().values(), *(REPO / "tests").rglob("*.py"))
                 if re.search(r"^\s*(import tomli\b|from tomli\b)", p.read_text(), re.M)]
    assert not fallbacks and not any(d.startswith("tomli") for d in project["dependencies"]), \
        f"a tomli fallback for a Python that requires-python excludes: {fallbacks}"
