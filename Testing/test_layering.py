"""The layering rule of docs/architecture.md, on the real source tree and on trees made to break it."""

from __future__ import annotations

from pathlib import Path

import import_graph as ig

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "LargeKernelSeg" / "lkseg"
SLICER_SIDE = [ROOT / "LargeKernelSeg" / "LargeKernelSeg.py", *(ROOT / "LargeKernelSeg" / "LargeKernelSegLib").glob("*.py")]


def test_lkseg_has_no_import_cycles():
    edges, _ = ig.graph(PACKAGE)
    assert len(edges) > 60  # the whole package was read
    assert ig.cycles(edges) == []


def test_lkseg_imports_point_down_the_layers_and_the_core_has_no_gui():
    edges, foreign = ig.graph(PACKAGE)
    assert {ig.unit(m) for m in edges} == set(ig.LAYERS), "a package of lkseg is missing from the layering table"
    assert ig.layer_violations(edges, foreign) == []


def test_slicer_module_uses_the_core_but_no_other_front_end():
    modules = ig.module_files(PACKAGE)
    used = {}
    for f in SLICER_SIDE:
        own, _ = ig.imports_of(f, modules)
        used[f.name] = {ig.unit(m) for m in own}
        assert not used[f.name] & ig.FRONT_ENDS, f"{f.name} imports the CLI or the viewer"
    assert {"checkpoint", "service", "jobs", "dataset", "io", "app"} <= used["session.py"]


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = tmp_path / "lkseg" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return tmp_path / "lkseg"


SOUND = {"__init__.py": "", "errors.py": "", "utils/__init__.py": "", "utils/atomic.py": "from lkseg.errors import X\n",
         "io/__init__.py": "from lkseg.io.image import Image\n", "io/image.py": "import numpy\nfrom lkseg.utils import atomic\n",
         "inference/__init__.py": "", "inference/segmenter.py": "from lkseg.io import Image\n",
         "viewer/__init__.py": "", "viewer/app.py": "import PyQt5\nfrom lkseg.inference.segmenter import S\n"}


def test_checker_accepts_a_sound_tree(tmp_path):
    edges, foreign = ig.graph(_tree(tmp_path, SOUND))
    assert edges["lkseg.inference.segmenter"] == {"lkseg.io"}
    assert edges["lkseg.io.image"] == {"lkseg.utils.atomic"}
    assert ig.cycles(edges) == [] and ig.layer_violations(edges, foreign) == []


def test_checker_finds_a_cycle_even_through_a_lazy_import(tmp_path):
    files = {**SOUND, "io/image.py": "def f():\n    from lkseg.io.imageio import read\n",
             "io/imageio.py": "from lkseg.io.image import Image\n"}
    edges, _ = ig.graph(_tree(tmp_path, files))
    assert ig.cycles(edges) == [["lkseg.io.image", "lkseg.io.imageio"]]


def test_checker_finds_a_submodule_importing_its_own_package(tmp_path):
    files = {**SOUND, "io/image.py": "from lkseg.io import Image\n"}  # io/__init__ imports io.image
    edges, _ = ig.graph(_tree(tmp_path, files))
    assert ig.cycles(edges) == [["lkseg.io", "lkseg.io.image"]]


def test_checker_finds_upward_imports_and_gui_in_the_core(tmp_path):
    files = {**SOUND, "io/image.py": "from lkseg.inference.segmenter import S\n",
             "utils/atomic.py": "import vtk\nfrom lkseg.viewer.app import W\n"}
    edges, foreign = ig.graph(_tree(tmp_path, files))
    problems = ig.layer_violations(edges, foreign)
    assert "lkseg.io.image imports lkseg.inference.segmenter: io may not import inference" in problems
    assert "lkseg.utils.atomic imports lkseg.viewer.app: utils may not import viewer" in problems
    assert "lkseg.utils.atomic imports ['vtk']: only front ends may use GUI toolkits" in problems
    assert not any(p.startswith("lkseg.viewer.app") for p in problems)  # the viewer may use PyQt5


def test_checker_refuses_a_package_missing_from_the_table(tmp_path):
    edges, foreign = ig.graph(_tree(tmp_path, {**SOUND, "extras/__init__.py": ""}))
    assert ig.layer_violations(edges, foreign) == ["lkseg.extras: unit 'extras' is not in the layering table"]
