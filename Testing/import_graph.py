"""The import graph of a package tree, read from source with ``ast`` (no module is executed), and
the layering rule of docs/architecture.md as data, so tests check both the real tree and trees
made to break the rule."""

from __future__ import annotations

import ast
from pathlib import Path

#: the stages and what each may import (besides itself); front ends may import every core unit
CORE_LAYERS: dict[str, set[str]] = {
    "root": set(),  # lkseg/__init__.py: the version
    "errors": set(),
    "utils": {"errors"},
    "io": {"errors", "utils"},
    "models": {"errors", "utils"},
    "app": {"errors", "utils"},
    "checkpoint": {"root", "errors", "utils", "models"},
    "preprocessing": {"errors", "utils", "io"},
    "evaluation": {"errors", "utils", "io"},
    "dicom": {"root", "errors", "utils", "io", "checkpoint"},
    "inference": {"errors", "utils", "io", "models", "checkpoint", "preprocessing"},
    "dataset": {"errors", "utils", "io", "checkpoint"},
    "jobs": {"errors", "utils"},
    "training": {"root", "errors", "utils", "io", "models", "checkpoint", "preprocessing", "inference",
                 "evaluation", "dataset"},
    "service": {"errors", "utils", "io", "checkpoint", "inference"},
}
FRONT_ENDS = {"cli", "viewer"}
LAYERS: dict[str, set[str]] = {**CORE_LAYERS, **{f: set(CORE_LAYERS) for f in FRONT_ENDS}}
#: GUI toolkits and Slicer: only the viewer (PyQt5, VTK) may import some of them
GUI_ROOTS = {"slicer", "qt", "ctk", "vtk", "vtkmodules", "PyQt5", "PyQt6", "PySide2", "PySide6", "mrml",
             "LargeKernelSegLib", "LargeKernelSeg"}
VIEWER_MAY_USE = {"PyQt5", "vtk", "vtkmodules"}


def module_files(package_dir: Path) -> dict[str, Path]:
    """``{"pkg.sub.mod": path}`` for every ``.py`` file under ``package_dir`` (``__init__`` -> the package)."""
    base = package_dir.parent
    out = {}
    for f in sorted(package_dir.rglob("*.py")):
        if "__pycache__" in f.parts:
            continue
        parts = list(f.relative_to(base).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def imports_of(path: Path, modules: dict[str, Path]) -> tuple[set[str], set[str]]:
    """(project modules imported by ``path``, at any depth of the file; top-level foreign roots)."""
    own, foreign = set(), set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for a in node.names:
                (own.add(_known(a.name, modules)) if _known(a.name, modules) else foreign.add(a.name.split(".")[0]))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            base = _known(node.module, modules)
            if base is None:
                foreign.add(node.module.split(".")[0])
                continue
            for a in node.names:  # `from pkg import submodule` imports the submodule
                sub = f"{node.module}.{a.name}"
                own.add(sub if sub in modules else base)
    return own, foreign


def _known(name: str, modules: dict[str, Path]) -> str | None:
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def graph(package_dir: Path) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(edges between the package's modules, foreign top-level imports per module)."""
    modules = module_files(package_dir)
    edges, foreign = {}, {}
    for name, path in modules.items():
        own, other = imports_of(path, modules)
        edges[name], foreign[name] = own - {name}, other
    return edges, foreign


def unit(module: str) -> str:
    """``lkseg.io.image`` -> ``io``; ``lkseg`` -> ``root``; ``lkseg.__main__`` -> ``cli``."""
    parts = module.split(".")
    if len(parts) == 1:
        return "root"
    return "cli" if parts[1] == "__main__" else parts[1]


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of two or more modules (Tarjan), each as a sorted list."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def layer_violations(edges: dict[str, set[str]], foreign: dict[str, set[str]]) -> list[str]:
    """Imports that break the layering: unknown units, upward or sideways imports, GUI imports in the core."""
    problems = []
    for mod, targets in sorted(edges.items()):
        src = unit(mod)
        if src not in LAYERS:
            problems.append(f"{mod}: unit {src!r} is not in the layering table")
            continue
        for t in sorted(targets):
            dst = unit(t)
            if dst != src and dst not in LAYERS[src]:
                problems.append(f"{mod} imports {t}: {src} may not import {dst}")
        gui = foreign.get(mod, set()) & GUI_ROOTS
        if src == "viewer":
            gui -= VIEWER_MAY_USE
        if gui:
            problems.append(f"{mod} imports {sorted(gui)}: only front ends may use GUI toolkits")
    return problems
