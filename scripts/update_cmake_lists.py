#!/usr/bin/env python3
"""Regenerate the file lists of LargeKernelSeg/CMakeLists.txt from the source tree.

The Slicer module ships the module script, ``LargeKernelSegLib`` and the whole ``lkseg`` package
except ``lkseg/viewer`` (the PyQt5 desktop viewer, which Slicer does not need), plus the module's
``Resources/`` and ``lkseg``'s package data. Lists are rewritten between the
``# BEGIN GENERATED <NAME>`` / ``# END GENERATED <NAME>`` marker comments, sorted, one per line.

Usage: ``python scripts/update_cmake_lists.py [--check]`` (``--check``: exit 1 if out of date).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULE_DIR = ROOT / "LargeKernelSeg"
CMAKE = MODULE_DIR / "CMakeLists.txt"
TOP_CMAKE = ROOT / "CMakeLists.txt"
SCREENSHOTS = ROOT / "Resources" / "Screenshots"
REQUIREMENTS_TXT = MODULE_DIR / "Resources" / "requirements.txt"
BUNDLED_WITH_SLICER = {"numpy"}
#: core dependencies the Slicer module does not use: lkseg.dicom (DICOM SEG, DICOMweb) serves the CLI and the
#: viewer; in Slicer, DICOM SEG is Slicer's own export, and pydicom/requests ship with Slicer (installing
#: highdicom would replace Slicer's pydicom 2 with pydicom 3 under its DICOM module)
NOT_USED_IN_SLICER = {"pydicom", "highdicom", "dicomweb-client", "requests"}
PACKAGE_DATA_DIRS = ("lkseg/data",)


def _excluded(rel: Path) -> bool:
    parts = rel.parts
    if any(p in ("__pycache__", "lkseg.egg-info", "Testing") or p.startswith(".") for p in parts):
        return True
    return len(parts) > 1 and parts[0] == "lkseg" and parts[1] == "viewer"


def module_scripts(module_dir: Path = MODULE_DIR) -> list[str]:
    """Every Python file the module ships, relative to the module folder, sorted."""
    files = [module_dir / "LargeKernelSeg.py"]
    for sub in ("LargeKernelSegLib", "lkseg"):
        files += (module_dir / sub).rglob("*.py")
    rels = {f.relative_to(module_dir) for f in files if f.is_file()}
    return sorted(r.as_posix() for r in rels if not _excluded(r))


def module_resources(module_dir: Path = MODULE_DIR) -> list[str]:
    """The module's Resources/ files and lkseg's package data, relative to the module folder, sorted."""
    files = [f for f in (module_dir / "Resources").rglob("*") if f.is_file()]
    for sub in PACKAGE_DATA_DIRS:
        files += [f for f in (module_dir / sub).rglob("*") if f.is_file() and f.suffix not in (".py", ".pyc")]
    rels = {f.relative_to(module_dir) for f in files}
    return sorted(r.as_posix() for r in rels if not _excluded(r))


def replace_block(text: str, name: str, items: list[str], indent: str = "  ") -> str:
    """Replace the lines between the BEGIN/END GENERATED ``name`` markers by ``items``."""
    pattern = re.compile(rf"(^[ \t]*# BEGIN GENERATED {name}\b[^\n]*\n)(.*?)(^[ \t]*# END GENERATED {name}\b)",
                         re.S | re.M)
    if not pattern.search(text):
        raise SystemExit(f"{CMAKE}: markers '# BEGIN GENERATED {name}' / '# END GENERATED {name}' not found")
    body = "".join(f"{indent}{item}\n" for item in items)
    return pattern.sub(lambda m: m.group(1) + body + m.group(3), text, count=1)


def listed_files(text: str, name: str) -> list[str]:
    """The items currently between the markers of block ``name`` (used by the static test)."""
    m = re.search(rf"# BEGIN GENERATED {name}\b[^\n]*\n(.*?)# END GENERATED {name}\b", text, re.S)
    if not m:
        raise ValueError(f"block {name} not found")
    return [line.strip() for line in m.group(1).splitlines() if line.strip() and not line.strip().startswith("#")]


RAW_URL = "https://raw.githubusercontent.com/LargeKernelSeg/SlicerLargeKernelSeg/main"
"""Where the repository's files are served (the catalog reads CMake text literally: no variables in URLs)."""
NO_SCREENSHOT = ("# No EXTENSION_SCREENSHOTURLS: no screenshot of the module inside Slicer exists yet (Slicer's GUI has not\n"
                 "# run where this was built; the desktop viewer's screenshots are not the module). The Extensions Index\n"
                 "# requires one: save Resources/Screenshots/slicer_*.png from Slicer and run this script again.")


def screenshot_line(screenshots: Path = SCREENSHOTS) -> str:
    """``set(EXTENSION_SCREENSHOTURLS ...)`` naming every screenshot of the module in Slicer
    (``Resources/Screenshots/slicer_*.png``) by its full URL, or a comment saying there is none."""
    names = sorted(p.name for p in screenshots.glob("slicer_*.png")) if screenshots.is_dir() else []
    if not names:
        return NO_SCREENSHOT
    urls = " ".join(f"{RAW_URL}/Resources/Screenshots/{n}" for n in names)
    return f'set(EXTENSION_SCREENSHOTURLS "{urls}")'


def requirements_text(pyproject: Path = ROOT / "pyproject.toml") -> str:
    """The module's Resources/requirements.txt: pyproject's dependencies minus what Slicer bundles."""
    import tomllib

    deps = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["dependencies"]
    keep = [d for d in deps if re.split(r"[<>=!~;\[ ]", d, maxsplit=1)[0].lower() not in BUNDLED_WITH_SLICER | NOT_USED_IN_SLICER]
    return ("# Written from pyproject.toml by scripts/update_cmake_lists.py; installed on first use\n"
            "# (torch through the PyTorch extension, the rest with pip).\n" + "".join(f"{d}\n" for d in keep))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report whether the lists are up to date")
    args = parser.parse_args(argv)
    changes = {}
    if not REQUIREMENTS_TXT.is_file():  # a new resource must be listed in the CMake lists below
        REQUIREMENTS_TXT.write_text(requirements_text(), encoding="utf-8")
    old = CMAKE.read_text(encoding="utf-8")
    new = replace_block(old, "SCRIPTS", module_scripts())
    changes[CMAKE] = (old, replace_block(new, "RESOURCES", module_resources()))
    old = TOP_CMAKE.read_text(encoding="utf-8")
    changes[TOP_CMAKE] = (old, replace_block(old, "SCREENSHOTS", [screenshot_line()], indent=""))
    old = REQUIREMENTS_TXT.read_text(encoding="utf-8") if REQUIREMENTS_TXT.is_file() else ""
    changes[REQUIREMENTS_TXT] = (old, requirements_text())
    stale = [path for path, (a, b) in changes.items() if a != b]
    for path in stale:
        if args.check:
            print(f"{path.relative_to(ROOT)} is out of date: run python scripts/update_cmake_lists.py", file=sys.stderr)
        else:
            path.write_text(changes[path][1], encoding="utf-8")
            print(f"updated {path.relative_to(ROOT)}")
    if not stale:
        print("CMake file lists are up to date")
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    raise SystemExit(main())
