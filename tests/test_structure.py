"""The package's shape: no import cycle between its modules, no module too long to read.

The import graph is read from the source with ``ast`` (every ``import`` and ``from ...
import``, function-local ones included), as ``/work/shared/tools/structure.py`` does.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "cvmatch_ray"
# Modules longer than this are hard to read in one sitting (house style: ~600).
MAX_LINES = 650


def _modules() -> dict[str, Path]:
    mods = {}
    for f in PACKAGE.rglob("*.py"):
        name = ".".join(f.relative_to(PACKAGE.parent).with_suffix("").parts)
        mods[name.removesuffix(".__init__")] = f
    return mods


def _import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports (a package's own submodules excluded)."""
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, f in mods.items():
        base = m if f.name == "__init__.py" else m.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                mod = node.module or ""
                if node.level:
                    parts = base.split(".")
                    parent = ".".join(parts[: len(parts) - node.level + 1])
                    mod = f"{parent}.{mod}" if mod else parent
                targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
            else:
                continue
            for t in targets:
                while t and t not in mods:
                    t = t.rsplit(".", 1)[0] if "." in t else ""
                if t and t != m and not m.startswith(t + "."):
                    graph[m].add(t)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, edges = work[-1]
            w = next(edges, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                component = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    component.append(w)
                    if w == v:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles() -> None:
    graph = _import_graph()
    assert "cvmatch_ray.storage.tables" in graph and graph["cvmatch_ray.match.scoring"]
    assert _cycles(graph) == []


def test_scoring_does_not_import_storage() -> None:
    graph = _import_graph()
    for module in ("cvmatch_ray.match.scoring", "cvmatch_ray.match.features"):
        assert not {m for m in graph[module] if m.startswith("cvmatch_ray.storage")}, module


def _third_party_imports(module: str) -> set[str]:
    """Top-level names of what ``module`` imports from outside the package."""
    path = _modules()[module]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.split(".")[0])
    return names - {"cvmatch_ray"}


def test_scorer_features_are_pure() -> None:
    # The features are computed in pipeline stages and read by the scorer: no store, no Ray.
    for module in ("cvmatch_ray.match.features", "cvmatch_ray.match.scoring"):
        assert not _third_party_imports(module) & {"lancedb", "lance", "ray"}, module


def _long_modules() -> list[str]:
    return sorted(
        f"{f.relative_to(PACKAGE.parent)} ({n} lines)"
        for f in _modules().values()
        if (n := len(f.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    )


def test_no_module_is_too_long() -> None:
    assert _long_modules() == []
