"""The package layers of docs/DESIGN.md, enforced: no import to a higher layer or a forbidden
sibling, and no import cycle between modules.

Every ``import`` / ``from … import`` in every module of ``atfab`` counts, wherever it stands (module
level, inside a function, under ``if TYPE_CHECKING:``): a cycle that only types need is still a
cycle a reader has to untangle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "atfab"

_CORE = ("atfab", "atfab.core")
_IMAGE = (*_CORE, "atfab.image")
_LINK = (*_IMAGE, "atfab.pki", "atfab.link")
_OPERATIONS = ("atfab.verify", "atfab.rotation", "atfab.customize")

#: The one layer table (docs/DESIGN.md, "Layers and packages"): package -> (rank, the packages its
#: modules may import besides their own). ``atfab`` is the package root (``__version__`` only).
#: A package imports only packages of a lower rank, and of those only the ones listed: the
#: simulator sits beside the link layer and may use the base and the images, never the client.
LAYERS: dict[str, tuple[int, tuple[str, ...]]] = {
    "atfab": (0, ()),
    "atfab.core": (0, ("atfab",)),
    "atfab.image": (1, _CORE),
    "atfab.pki": (2, _IMAGE),
    "atfab.link": (3, _IMAGE),
    "atfab.sim": (3, _IMAGE),
    "atfab.verify": (4, _LINK),
    "atfab.rotation": (4, _LINK),
    "atfab.customize": (4, _LINK),
    "atfab.station": (5, (*_LINK, "atfab.sim", *_OPERATIONS)),
    "atfab.commands": (6, (*_LINK, "atfab.sim", *_OPERATIONS, "atfab.station")),
    "atfab.cli": (7, _CORE),     # registers atfab.commands by name (importlib), not by import
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_of(module: str) -> str:
    """The LAYERS entry a module belongs to (the longest dotted prefix that is one)."""
    parts = module.split(".")
    for i in range(len(parts), 0, -1):
        if ".".join(parts[:i]) in LAYERS:
            return ".".join(parts[:i])
    raise KeyError(module)


def source_path(module: str) -> str:
    """The file a module is read from, relative to the checkout (a package is its __init__.py)."""
    path = all_modules()[module]
    return str(path.relative_to(PACKAGE.parent))


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(module: str, path: Path, known: set[str]) -> list[tuple[str, int]]:
    """(imported atfab module, line) for every import statement of ``path``."""
    is_package = path.name == "__init__.py"
    here = module if is_package else module.rsplit(".", 1)[0]
    out: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names if a.name.split(".")[0] == "atfab"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")[: len(here.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "atfab":
                continue
            # ``from pkg import mod`` imports the module pkg.mod; ``from mod import name`` imports mod
            subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in known]
            out += [(s, node.lineno) for s in subs] or [(target, node.lineno)]
    return out


def import_graph() -> dict[str, list[tuple[str, int]]]:
    mods = all_modules()
    known = set(mods)
    return {m: imports_of(m, p, known) for m, p in mods.items()}


def layer_violations(graph: dict[str, list[tuple[str, int]]]) -> list[str]:
    problems = []
    for src, targets in graph.items():
        p = package_of(src)
        rank, allowed = LAYERS[p]
        for dst, line in targets:
            q = package_of(dst)
            if q == p:
                continue
            where = f"{source_path(src)}:{line}: imports {dst}"
            if LAYERS[q][0] > rank:
                problems.append(f"{where}: upward ({p} is layer {rank}, {q} is layer {LAYERS[q][0]})")
            elif q not in allowed:
                problems.append(f"{where}: {p} may not import {q} (allowed: {', '.join(allowed) or 'nothing'})")
    return problems


def cycles(graph: dict[str, list[tuple[str, int]]]) -> list[list[str]]:
    """Strongly connected components with more than one module (or a module importing itself)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    edges = {m: sorted({d for d, _ in ts if d in graph}) for m, ts in graph.items()}

    def visit(v: str) -> None:          # Tarjan; the graph is small enough for recursion
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in edges[v]:
                out.append(sorted(comp))

    for m in sorted(edges):
        if m not in index:
            visit(m)
    return out


def test_every_package_has_a_layer():
    unknown = sorted({m for m in all_modules() if not any(m == p or m.startswith(p + ".") for p in LAYERS)})
    assert not unknown, f"modules of no package in LAYERS (add the package to the table): {unknown}"


def test_no_upward_or_forbidden_import():
    problems = layer_violations(import_graph())
    assert not problems, "\n".join(problems)


def test_no_import_cycle():
    found = cycles(import_graph())
    assert not found, "\n".join("import cycle: " + " -> ".join(c) for c in found)


@pytest.mark.parametrize("src, dst, expect", [
    ("atfab.image.gatt", "atfab.station.report", "upward"),
    ("atfab.sim.at_basic", "atfab.link.at.client", "may not import"),
    ("atfab.verify.unit", "atfab.rotation.results", "may not import"),
])
def test_the_checker_catches_a_bad_import(src: str, dst: str, expect: str):
    graph = {src: [(dst, 1)], dst: []}
    assert expect in layer_violations(graph)[0]


def test_the_checker_catches_a_cycle():
    graph = {"atfab.sim.chip": [("atfab.sim.efuse", 1)], "atfab.sim.efuse": [("atfab.sim.chip", 9)]}
    assert cycles(graph) == [["atfab.sim.chip", "atfab.sim.efuse"]]
