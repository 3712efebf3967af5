"""The checks 3D Slicer's Extensions Index runs on a submitted extension (its
scripts/check_description_files.py, read at Slicer/ExtensionsIndex main, re-implemented here from its rules),
applied offline to this repository: project name, extension and repository names, category, licence,
repository size, and icon / screenshot URLs read as plain text from the top-level CMakeLists.txt, each
``http...`` URL resolving to a PNG in this repository (the index downloads it and wants an image)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("update_cmake_lists", ROOT / "scripts" / "update_cmake_lists.py")
update_cmake_lists = importlib.util.module_from_spec(_spec)  # the generator of the CMake file's screenshot block
_spec.loader.exec_module(update_cmake_lists)

EXTENSION = "LargeKernelSeg"
RAW = "https://raw.githubusercontent.com/LargeKernelSeg/SlicerLargeKernelSeg/main/"
REPOSITORY = "https://github.com/LargeKernelSeg/SlicerLargeKernelSeg"
#: the index's rule: the repository name starts with one of these, the extension name must not start with Slicer
REPOSITORY_PREFIXES = ("Slicer", "Slicer-", "Slicer_", "SlicerExtension-", "SlicerExtension_")
LICENSE_NAMES = ("LICENSE", "LICENCE", "License.txt", "license.txt", "LICENSE.txt", "COPYING", "COPYING.txt")
SIZE_LIMIT_MB = 100
PNG = b"\x89PNG\r\n\x1a\n"


def _cmake() -> str:
    return (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")


def _setting(text: str, name: str) -> str | None:
    """The quoted value of ``set(NAME "...")`` as the index reads it: text, no CMake evaluation."""
    m = re.search(rf'set\s*\(\s*{name}\s*"([^"]+)"\s*\)', text, re.I)
    return m.group(1) if m else None


def _resolve(url: str) -> Path:
    """Offline stand-in for the index's download: a raw URL of this repository -> the tracked file it serves."""
    assert url.startswith("http"), f"{url!r} should be a valid URL starting with 'http'"
    assert url.startswith(RAW), f"{url} is not a file of this repository's main branch"
    path = ROOT / url[len(RAW):]
    tracked = subprocess.run(["git", "ls-files", "--error-unmatch", str(path)], cwd=ROOT, capture_output=True)
    assert path.is_file() and tracked.returncode == 0, f"{url}: {path} is not a committed file"
    assert path.read_bytes()[:8] == PNG and path.suffix == ".png", f"{url} is not a PNG image"
    return path


def test_project_and_repository_names():
    text = _cmake()
    assert re.findall(r"project\s*\(\s*([^\s)]+)", text, re.I)[0] == EXTENSION
    assert not EXTENSION.lower().startswith("slicer")
    homepage = _setting(text, "EXTENSION_HOMEPAGE")
    assert homepage.startswith(REPOSITORY)
    assert REPOSITORY.rstrip("/").split("/")[-1].startswith(REPOSITORY_PREFIXES)


def test_category_is_one_the_index_accepts():
    # "Segmentation" is in the index's ACCEPTED_EXTENSION_CATEGORIES
    assert _setting(_cmake(), "EXTENSION_CATEGORY") == "Segmentation"


def test_icon_url_is_literal_and_resolves_to_a_png():
    url = _setting(_cmake(), "EXTENSION_ICONURL")
    assert url and "${" not in url, url
    _resolve(url)


def test_screenshots_show_the_module_in_slicer_or_are_not_claimed():
    text = _cmake()
    urls = (_setting(text, "EXTENSION_SCREENSHOTURLS") or "").split()
    assert "${" not in " ".join(urls)
    for url in urls:
        path = _resolve(url)
        assert path.name.startswith("slicer_"), f"{url} is not a screenshot of the module in Slicer"
    if not urls:  # the index requires screenshots: the file says plainly why there are none yet
        assert update_cmake_lists.NO_SCREENSHOT in text
    assert not re.search(r"viewer_\w+\.png", text), "a desktop-viewer screenshot presented as the Slicer module"


def test_licence_and_repository_size():
    assert any((ROOT / name).is_file() for name in LICENSE_NAMES)
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    size = sum((ROOT / f.decode()).stat().st_size for f in files if f and (ROOT / f.decode()).is_file())
    assert size < SIZE_LIMIT_MB * 1024 * 1024, f"{size / 1e6:.0f} MB"


def test_the_url_checks_can_fail():
    import pytest

    for bad in ("${LKSEG_RAW}/Resources/Icons/LargeKernelSeg.png", RAW + "Resources/Icons/missing.png",
                RAW + "README.md"):
        with pytest.raises(AssertionError):
            _resolve(bad)
