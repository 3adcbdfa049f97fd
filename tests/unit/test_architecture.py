"""The layer contract of docs/architecture.md, checked on the real import graph: import-linter's
contracts in pyproject.toml are kept, no module imports itself through others (TYPE_CHECKING
imports included), and every top-level module has a place in the layers."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import tomllib

import grimp
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
PACKAGE = "identity_hub"


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(PACKAGE, exclude_type_checking_imports=False, cache_dir=None)


LINT = ("import sys; from importlinter import cli; "
        "sys.exit(cli.lint_imports(config_filename='pyproject.toml', no_cache=True, no_logo=True))")


def test_import_linter_contracts_are_kept() -> None:
    # `lint-imports` in a subprocess: import-linter disables the loggers that exist when it
    # runs, which would silence this process's log capture for the tests that follow.
    done = subprocess.run([sys.executable, "-c", LINT], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def test_no_import_cycles(graph: grimp.ImportGraph) -> None:
    # The one exception: click's command modules register on the group defined in
    # identity_hub/cli/__init__.py, which imports them at its end; that cycle stays inside the
    # command-line layer, which nothing imports.
    found = [c for c in cycles(graph) if not all(m.startswith(f"{PACKAGE}.cli") for m in c)]
    details = []
    for component in found:
        members = set(component)
        edges = [f"{a} -> {b}" for a in component
                 for b in sorted(graph.find_modules_directly_imported_by(a)) if b in members]
        details.append("; ".join(edges))
    assert found == [], "import cycles:\n" + "\n".join(details)


def test_the_cycle_finder_sees_a_cycle() -> None:
    g = grimp.ImportGraph()
    for module in ("p", "p.a", "p.b", "p.c"):
        g.add_module(module)
    g.add_import(importer="p.a", imported="p.b")
    g.add_import(importer="p.b", imported="p.a")
    g.add_import(importer="p.c", imported="p.a")
    assert cycles(g) == [["p.a", "p.b"]]


def test_every_top_level_module_has_a_layer(graph: grimp.ImportGraph) -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    named: set[str] = set()
    for contract in config["contracts"]:
        for layer in contract.get("layers", []):
            for part in layer.replace("|", ":").split(":"):
                named.add(part.strip().strip("()"))
    children = {m for m in graph.find_children(PACKAGE) if not m.endswith("__main__")}
    unplaced = sorted(m for m in children
                      if m not in named and not any(n.startswith(m + ".") for n in named))
    assert unplaced == [], (f"{unplaced}: add them to the layers in pyproject.toml "
                            "([tool.importlinter]) and docs/architecture.md")
