"""The API code's imports point one way: no module of it is part of an import cycle.

The import graph of stargate/ is read with `ast` (imports inside functions count too; importing a.b.c
counts as importing the packages a and a.b as well, since Python runs them).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "stargate"
API_CODE = ("stargate.api", "stargate.backends.openai_backend", "stargate.stages.cost")


def modules(root: Path) -> dict[str, tuple[Path, bool]]:
    out = {}
    for p in root.rglob("*.py"):
        parts = list(p.relative_to(root.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (p, is_pkg)
    return out


def import_graph(root: Path) -> dict[str, set[str]]:
    mods = modules(root)

    def with_parents(name: str) -> set[str]:
        parts = name.split(".")
        return {".".join(parts[:i]) for i in range(1, len(parts) + 1)} & mods.keys()

    graph: dict[str, set[str]] = {}
    for mod, (path, is_pkg) in mods.items():
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    edges |= with_parents(alias.name)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    here = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    base = ".".join(here[: len(here) - node.level + 1] + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                edges |= with_parents(base)
                edges |= {f"{base}.{a.name}" for a in node.names} & mods.keys()  # from pkg import submodule
        # a module's own packages are already running when it is imported: not edges
        graph[mod] = {e for e in edges if e != mod and not mod.startswith(e + ".")}
    return graph


def in_cycles(graph: dict[str, set[str]]) -> set[str]:
    """Modules that can reach themselves again."""

    def reachable(start: str) -> set[str]:
        seen, todo = set(), list(graph[start])
        while todo:
            m = todo.pop()
            if m not in seen:
                seen.add(m)
                todo.extend(graph.get(m, ()))
        return seen

    return {m for m in graph if m in reachable(m)}


def test_the_checker_sees_a_cycle(tmp_path):
    pkg = tmp_path / "stargate"
    (pkg / "api").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "api" / "__init__.py").write_text("")
    (pkg / "api" / "a.py").write_text("from . import b\n")
    (pkg / "api" / "b.py").write_text("def f():\n    from .a import x  # lazy, still a cycle\n")
    (pkg / "api" / "c.py").write_text("from .a import y\n")
    assert in_cycles(import_graph(pkg)) == {"stargate.api.a", "stargate.api.b"}


def test_no_api_module_is_part_of_an_import_cycle():
    graph = import_graph(PACKAGE)
    assert "stargate.api.online" in graph["stargate.backends.openai_backend"]  # the graph is read
    bad = sorted(m for m in in_cycles(graph) if m.startswith(API_CODE))
    assert not bad, f"import cycle through {bad}"
