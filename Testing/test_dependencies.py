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
#: optional packages the core may import, only in these modules, which the core imports lazily (the
#: package works without them: Testing/models/test_triton_depthwise.py runs it with triton blocked);
#: they must still be in the dev extra (test_test_and_script_imports_are_in_the_dev_extra reads them)
OPTIONAL_IN_CORE = {"triton": {"LargeKernelSeg/lkseg/models/triton_depthwise.py",
                               "LargeKernelSeg/lkseg/models/triton_kernels.py"}}


def _declared() -> dict[str, set[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    groups = {"core": project["dependencies"], **project["optional-dependencies"]}
    return {g: {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].strip().lower() for r in reqs} for g, reqs in groups.items()}


def _third_party_imports(folder: Path, root: Path = ROOT,
                         optional: dict[str, set[str]] | None = None) -> dict[str, str]:
    """``{top-level name: first file importing it}`` under ``folder``, less the ``optional`` imports of
    the files allowed them."""
    found = {}
    local = {p.stem for p in folder.rglob("*.py")} | {p.name for p in folder.rglob("*") if p.is_dir()}
    for f in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else [])
            for name in names:
                top = name.split(".")[0]
                where = str(f.relative_to(root))
                if where in (optional or {}).get(top, ()):
                    continue
                if top not in sys.stdlib_module_names and top not in NOT_ON_PYPI and top not in local:
                    found.setdefault(top, where)
    return found


def _dist(name: str) -> str:
    return DISTRIBUTION.get(name, name).lower()


def test_core_imports_are_core_dependencies():
    declared = _declared()
    core = {n: f for n, f in _third_party_imports(ROOT / "LargeKernelSeg" / "lkseg", optional=OPTIONAL_IN_CORE).items()
            if "/viewer/" not in f}
    missing = {n: f for n, f in core.items() if _dist(n) not in declared["core"]}
    assert not missing, f"imported by the core but not in [project] dependencies: {missing}"


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
    (tmp_path / "other.py").write_text("import triton\n")
    assert set(_third_party_imports(tmp_path, root=tmp_path, optional={"triton": {"mod.py"}})) == \
        {"numpy", "made_up_package", "triton"}  # allowed in mod.py only, so other.py's import counts
    assert "triton" not in _third_party_imports(tmp_path, root=tmp_path, optional={"triton": {"mod.py", "other.py"}})
