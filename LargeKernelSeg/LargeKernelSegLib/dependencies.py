"""Which Python packages the module needs, and which are missing in this Python.

torch is installed through the PyTorch extension (``PyTorchUtils``) so that the right CUDA
build is chosen; the others through pip. Nothing here installs anything.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

REQUIREMENTS: dict[str, str] = {
    "torch": "torch>=2.1",
    "monai": "monai>=1.4",
    "SimpleITK": "SimpleITK>=2.3",
    "safetensors": "safetensors>=0.4",
    "matplotlib": "matplotlib>=3.7",
    "tqdm": "tqdm>=4.60",
}
"""Import name -> pip requirement (the same pins as pyproject.toml's dependencies)."""

TORCH = "torch"


def missing_modules(names: list[str] | None = None) -> list[str]:
    """Import names from :data:`REQUIREMENTS` (or ``names``) that cannot be imported here."""
    out = []
    for name in names if names is not None else list(REQUIREMENTS):
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            out.append(name)
    return out


def pip_requirements(missing: list[str]) -> list[str]:
    """pip requirement strings for the missing packages other than torch."""
    return [REQUIREMENTS.get(name, name) for name in missing if name != TORCH]


def install_prompt(missing: list[str]) -> str:
    """The question asked before installing."""
    names = ", ".join(missing)
    return (f"LargeKernelSeg needs these Python packages, which are not installed yet: {names}.\n\n"
            "Install them now? This downloads several hundred megabytes and can take a few minutes"
            + (" (PyTorch is installed through the PyTorch extension)." if TORCH in missing else "."))


def lkseg_parent() -> Path:
    """The folder that holds the ``lkseg`` package (inside Slicer: the extension's qt-scripted-modules)."""
    spec = importlib.util.find_spec("lkseg")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("lkseg is not importable", name="lkseg")
    return Path(spec.origin).resolve().parent.parent


def pythonpath_with(folder: Path, existing: str | None) -> str:
    """``PYTHONPATH`` with ``folder`` first (once), so child processes (``python -m lkseg.worker``,
    ``python -m lkseg.training``) import the same ``lkseg`` as the module. Inside Slicer
    ``sys.executable`` is PythonSlicer, which does not search the extension's folders by itself."""
    parts = [p for p in (existing or "").split(os.pathsep) if p and Path(p) != Path(folder)]
    return os.pathsep.join([str(folder), *parts])
