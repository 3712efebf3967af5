"""Which Python packages the module needs, and which are missing in this Python.

torch is installed through the PyTorch extension (``PyTorchUtils``) so that the right CUDA
build is chosen; the others through pip. Nothing here installs anything.
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

REQUIREMENTS_FILE = Path(__file__).resolve().parent.parent / "Resources" / "requirements.txt"
"""The module's pip requirements, written from pyproject.toml by scripts/update_cmake_lists.py."""
IMPORT_NAMES = {"pillow": "PIL", "scikit-image": "skimage", "pyyaml": "yaml"}
"""pip names whose import name differs (lower-case pip name -> import name)."""


def read_requirements(path: Path = REQUIREMENTS_FILE) -> dict[str, str]:
    """Import name -> pip requirement, from a requirements.txt (comments and blank lines ignored)."""
    out: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        req = line.split("#", 1)[0].strip()
        if not req:
            continue
        name = re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0]
        out[IMPORT_NAMES.get(name.lower(), name)] = req
    return out


REQUIREMENTS: dict[str, str] = read_requirements()
"""Import name -> pip requirement (the pins of pyproject.toml's dependencies, numpy excepted)."""

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


#: distributions pip must never replace: torch (PyTorch Utils chose its CUDA build) and what Slicer's own
#: Python ships with that the others import (numpy); pinned to the installed versions while installing
PROTECTED = ("torch", "torchvision", "torchaudio", "numpy")


def installed_versions(names=PROTECTED) -> dict[str, str]:
    """Distribution name -> installed version, for those of ``names`` that are installed."""
    from importlib import metadata

    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def constraints_text(installed: dict[str, str]) -> str:
    """A pip constraints file pinning each protected distribution to its installed version (local
    version labels such as ``+cu121`` included, so a CUDA build is never swapped for another)."""
    return "".join(f"{name}=={version}\n" for name, version in sorted(installed.items()))


def pip_install_args(requirements: list[str], constraints_file: str | os.PathLike | None) -> list[str]:
    """Arguments after ``pip install``: the requirements, held to the constraints file when there is one.
    With a torch pinned, pip's resolver picks versions of the others that accept it (e.g. an older
    MONAI) or fails, and then nothing is installed."""
    return ([] if constraints_file is None else ["-c", str(constraints_file)]) + list(requirements)


def changed_imports(before: dict[str, str], after: dict[str, str], imported: set[str]) -> list[str]:
    """Distributions whose version changed while they were already imported: Slicer must restart."""
    return sorted(name for name in after if before.get(name) != after[name] and name in imported)
