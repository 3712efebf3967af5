"""Every third-party import of the package, its tests and its scripts is declared in pyproject.toml,
so that README's install commands give a machine everything the code imports."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
#: import name -> distribution name, where they differ
DISTRIBUTION = {"PIL": "pillow", "dicomweb_client": "dicomweb-client", "vtkmodules": "vtk", "nrrd": "pynrrd", "pytestqt": "pytest-qt", "yaml": "pyyaml",
                "SimpleITK": "simpleitk", "PyQt5": "pyqt5"}
#: provided by 3D Slicer, or the project's own top-level names
NOT_ON_PYPI = {"slicer", "qt", "ctk", "vtkSegmentationCorePython", "PythonQt", "mrml", "sitkUtils", "DICOMLib",
               "PyTorchUtils", "SampleData", "lkseg", "LargeKernelSeg", "LargeKernelSegLib"}
#: optional packages imported at the top of core modules that the core itself only imports inside a
#: ``try ... except ImportError`` (the package works without them: Testing/models/test_triton_depthwise.py
#: runs it with triton blocked); like guarded imports, they must be in an extra
OPTIONAL_IN_CORE = {"triton": {"LargeKernelSeg/lkseg/models/triton_depthwise.py",
                               "LargeKernelSeg/lkseg/models/triton_kernels.py"}}


def _declared() -> dict[str, set[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    groups = {"core": project["dependencies"], **project["optional-dependencies"]}
    return {g: {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].strip().lower() for r in reqs} for g, reqs in groups.items()}


def _guarded(tree: ast.AST) -> set[int]:
    """ids of the nodes inside the body of a ``try`` that catches ImportError or ModuleNotFoundError:
    imports the code can do without (it falls back when they fail)."""
    caught = {"ImportError", "ModuleNotFoundError"}
    inside: set[int] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Try):
            continue
        types = [h.type for h in node.handlers if h.type is not None]
        names = {n.id for t in types for n in ([*t.elts] if isinstance(t, ast.Tuple) else [t])
                 if isinstance(n, ast.Name)}
        if names & caught:
            inside |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return inside


def _third_party_imports(folder: Path, root: Path = ROOT, required_only: bool = False,
                         optional: dict[str, set[str]] | None = None) -> dict[str, str]:
    """Top-level third-party names imported under ``folder`` -> the first file importing them;
    ``required_only`` leaves out imports that only ever happen inside a ``try`` catching ImportError
    and the ``optional`` imports of the files allowed them (``{name: {file, ...}}``)."""
    found: dict[str, str] = {}
    required: set[str] = set()
    local = {p.stem for p in folder.rglob("*.py")} | {p.name for p in folder.rglob("*") if p.is_dir()}
    for f in sorted(folder.rglob("*.py")):
        tree = ast.parse(f.read_text(encoding="utf-8"))
        guarded = _guarded(tree)
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else [])
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in NOT_ON_PYPI and top not in local:
                    found.setdefault(top, str(f.relative_to(root)))
                    if id(node) not in guarded and str(f.relative_to(root)) not in (optional or {}).get(top, ()):
                        required.add(top)
    return {n: f for n, f in found.items() if n in required} if required_only else found


def _dist(name: str) -> str:
    return DISTRIBUTION.get(name, name).lower()


def test_core_imports_are_core_dependencies():
    declared = _declared()
    core = {n: f for n, f in _third_party_imports(ROOT / "LargeKernelSeg" / "lkseg", required_only=True,
                                                  optional=OPTIONAL_IN_CORE).items()
            if "/viewer/" not in f}
    missing = {n: f for n, f in core.items() if _dist(n) not in declared["core"]}
    assert not missing, f"imported by the core but not in [project] dependencies: {missing}"


def test_optional_core_imports_are_in_an_extra():
    """An import the core guards with ``except ImportError`` (e.g. Triton) need not be a dependency,
    but some extra must install it, or its code would never be tested."""
    declared = _declared()
    package = ROOT / "LargeKernelSeg" / "lkseg"
    required = _third_party_imports(package, required_only=True, optional=OPTIONAL_IN_CORE)
    optional = {n: f for n, f in _third_party_imports(package).items() if n not in required and "/viewer/" not in f}
    extras = set().union(*(names for group, names in declared.items() if group != "core"))
    missing = {n: f for n, f in optional.items() if _dist(n) not in extras}
    assert not missing, f"optional imports of the core that no extra installs: {missing}"


def test_viewer_imports_are_in_the_viewer_extra():
    declared = _declared()
    viewer = _third_party_imports(ROOT / "LargeKernelSeg" / "lkseg" / "viewer")
    missing = {n: f for n, f in viewer.items() if _dist(n) not in declared["core"] | declared["viewer"]}
    assert not missing, f"imported by the viewer but not in the viewer extra: {missing}"


def test_test_and_script_imports_are_in_the_dev_extra():
    declared = _declared()
    allowed = declared["core"] | declared["dev"]
    for folder in ("Testing", "scripts", "LargeKernelSeg"):
        used = _third_party_imports(ROOT / folder)
        missing = {n: f for n, f in used.items() if _dist(n) not in allowed}
        assert not missing, f"imported under {folder}/ but not installed by the dev extra: {missing}"


def test_the_checker_sees_an_undeclared_import(tmp_path):
    (tmp_path / "mod.py").write_text("import numpy\nimport made_up_package\nfrom os import path\nfrom . import x\n")
    assert set(_third_party_imports(tmp_path, root=tmp_path)) == {"numpy", "made_up_package"}


def test_the_checker_tells_guarded_imports_from_required_ones(tmp_path):
    (tmp_path / "mod.py").write_text(
        "try:\n    import triton\nexcept ImportError:\n    triton = None\n"
        "try:\n    import numpy\nexcept (ValueError, ModuleNotFoundError):\n    pass\n"
        "try:\n    import scipy\nexcept Exception:\n    pass\n"  # not a fallback for a missing package
        "import made_up_package\n")
    assert set(_third_party_imports(tmp_path, root=tmp_path)) == {"triton", "numpy", "scipy", "made_up_package"}
    assert set(_third_party_imports(tmp_path, root=tmp_path, required_only=True)) == {"scipy", "made_up_package"}
    (tmp_path / "other.py").write_text("import triton\n")
    allowed = {"triton": {"mod.py"}}  # allowed in mod.py only, so other.py's import is required
    assert "triton" in _third_party_imports(tmp_path, root=tmp_path, required_only=True, optional=allowed)
    allowed = {"triton": {"mod.py", "other.py"}}
    assert "triton" not in _third_party_imports(tmp_path, root=tmp_path, required_only=True, optional=allowed)
