"""Imports run downhill: common <- leaves (curricula, learners, fitness) <- evolve <- evolve.commands.

Read from the source (every `import`, at module level or inside a function, TYPE_CHECKING ones too),
so a lazy import inside a function cannot hide an upward edge or a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("common", "curricula", "learners", "fitness", "evolve")
LEAVES = ("curricula", "learners", "fitness")


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for f in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(f.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            mods[".".join(parts)] = f
    return mods


MODULES = _modules()


def _owner(name: str) -> str | None:
    """The project module `name` refers to (itself, or the nearest enclosing module)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


MISSING: list[str] = []   # imports of project modules absent from this checkout


def _imports(mod: str, path: Path) -> set[str]:
    """Project modules `mod` imports. `from pkg import x` counts pkg.x when x is a module."""
    out: set[str] = set()
    package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base
                     for a in node.names]
        else:
            continue
        MISSING.extend(f"{mod} imports {n}" for n in names
                       if _top(n) in PACKAGES and n not in MODULES)
        out |= {t for t in map(_owner, names) if t and t != mod}
    return out


def _top(mod: str) -> str:
    return mod.split(".")[0]


GRAPH = {m: _imports(m, p) for m, p in MODULES.items()}


def test_every_imported_project_module_exists() -> None:
    # an editable install elsewhere can still satisfy an import of a module deleted here
    assert not MISSING, "; ".join(MISSING)


def test_the_graph_sees_the_packages() -> None:
    # guards the test itself: every package found, edges read (a parse that found nothing would
    # pass every rule below)
    assert {_top(m) for m in MODULES} == set(PACKAGES)
    assert "common.registry" in GRAPH["curricula.registry"]
    assert "learners.population" in GRAPH["learners.peft_io"]


@pytest.mark.parametrize("leaf", LEAVES)
def test_leaves_import_only_themselves_and_common(leaf: str) -> None:
    bad = sorted(f"{m} -> {t}" for m, ts in GRAPH.items() if _top(m) == leaf
                 for t in ts if _top(t) not in (leaf, "common"))
    assert not bad, "a leaf imports evolve or another leaf: " + "; ".join(bad)


def test_common_imports_nothing_of_the_project() -> None:
    bad = sorted(f"{m} -> {t}" for m, ts in GRAPH.items() if _top(m) == "common"
                 for t in ts if _top(t) != "common")
    assert not bad, "; ".join(bad)


def test_only_the_cli_imports_the_commands() -> None:
    bad = sorted(f"{m} -> {t}" for m, ts in GRAPH.items()
                 if not (m == "evolve.cli" or m.startswith("evolve.commands"))
                 for t in ts if t.startswith("evolve.commands"))
    assert not bad, "; ".join(bad)


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(GRAPH):
        if root in index:
            continue
        work = [(root, iter(sorted(GRAPH[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(GRAPH[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def test_no_import_cycles_among_project_modules() -> None:
    assert _cycles() == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    GRAPH["common.cache"].add("common.seeds")
    GRAPH["common.seeds"].add("common.cache")
    try:
        assert ["common.cache", "common.seeds"] in _cycles()
    finally:
        GRAPH["common.cache"].discard("common.seeds")
        GRAPH["common.seeds"].discard("common.cache")
