"""Static checks of the 3D Slicer extension (Slicer itself cannot run here or in CI).

Compiles the module, checks that the CMake file lists match the tree, that the .ui file is
well formed and holds every widget the module uses, that the parameter node's GUI bindings fit,
that the core never imports GUI toolkits, and that the extension's CMake follows Slicer's template.
"""

from __future__ import annotations

import ast
import os
import py_compile
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODULE_DIR = ROOT / "LargeKernelSeg"
MODULE_PY = MODULE_DIR / "LargeKernelSeg.py"
UI_FILE = MODULE_DIR / "Resources" / "UI" / "LargeKernelSeg.ui"
GUI_TOOLKITS = {"slicer", "qt", "ctk", "vtk", "vtkmodules", "PyQt5", "PyQt6", "PySide2", "PySide6", "mrml"}


#: LargeKernelSegLib modules that call Slicer; imported only by LargeKernelSeg.py
SLICER_SIDE_LIB = ("install.py", "logic.py", "mrml.py", "resources.py", "runs.py", "selftest.py")


def _module_tree() -> ast.Module:
    return ast.parse(MODULE_PY.read_text(encoding="utf-8"))


def _slicer_side_trees() -> list[ast.Module]:
    """The main module file and the LargeKernelSegLib modules that call Slicer."""
    files = [MODULE_PY] + [MODULE_DIR / "LargeKernelSegLib" / f for f in SLICER_SIDE_LIB]
    return [ast.parse(f.read_text(encoding="utf-8")) for f in files]


def _cmake_list(text: str, variable: str) -> list[str]:
    code = "\n".join(line.split("#", 1)[0] for line in text.splitlines())  # CMake comments run to the line end
    m = re.search(rf"set\(\s*{variable}\b(.*?)\)", code, re.S)
    assert m, f"{variable} is not set in LargeKernelSeg/CMakeLists.txt"
    return m.group(1).split()


def _shipped_python_files() -> set[str]:
    """Every Python file the module must ship: module, LargeKernelSegLib, lkseg minus lkseg/viewer."""
    out = {"LargeKernelSeg.py"}
    for sub in ("LargeKernelSegLib", "lkseg"):
        for f in (MODULE_DIR / sub).rglob("*.py"):
            rel = f.relative_to(MODULE_DIR)
            if "__pycache__" in rel.parts or rel.parts[:2] == ("lkseg", "viewer"):
                continue
            out.add(rel.as_posix())
    return out


def _imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_module_and_glue_compile(tmp_path):
    files = [MODULE_PY, *sorted((MODULE_DIR / "LargeKernelSegLib").glob("*.py")),
             *sorted((MODULE_DIR / "Testing" / "Python").glob("*.py")), ROOT / "scripts" / "update_cmake_lists.py"]
    assert len(files) > 5
    for f in files:
        py_compile.compile(str(f), cfile=str(tmp_path / (f.name + "c")), doraise=True)


def test_cmake_lists_every_python_file_and_resource():
    text = (MODULE_DIR / "CMakeLists.txt").read_text(encoding="utf-8")
    scripts = _cmake_list(text, "MODULE_PYTHON_SCRIPTS")
    resources = _cmake_list(text, "MODULE_PYTHON_RESOURCES")
    assert scripts == sorted(scripts) and len(set(scripts)) == len(scripts)
    for item in scripts + resources:
        assert (MODULE_DIR / item).is_file(), f"LargeKernelSeg/CMakeLists.txt lists {item}, which does not exist"
    missing = _shipped_python_files() - set(scripts)
    assert not missing, f"not listed in LargeKernelSeg/CMakeLists.txt (run scripts/update_cmake_lists.py): {sorted(missing)}"
    assert not [s for s in scripts if s.startswith("lkseg/viewer/")], "the PyQt5 viewer is not shipped in Slicer"
    module_resources = {f.relative_to(MODULE_DIR).as_posix() for f in (MODULE_DIR / "Resources").rglob("*") if f.is_file()}
    assert module_resources <= set(resources)
    assert {"Resources/UI/LargeKernelSeg.ui", "Resources/Icons/LargeKernelSeg.png"} <= set(resources)
    assert re.search(r"slicerMacroBuildScriptedModule\(\s*NAME \$\{MODULE_NAME\}\s*SCRIPTS \$\{MODULE_PYTHON_SCRIPTS\}"
                     r"\s*RESOURCES \$\{MODULE_PYTHON_RESOURCES\}\s*WITH_GENERIC_TESTS\s*\)", text)
    assert "set(MODULE_NAME LargeKernelSeg)" in text


def test_generator_reports_lists_up_to_date():
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "update_cmake_lists.py"), "--check"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr


def test_slicer_testing_is_wired_under_build_testing():
    text = (MODULE_DIR / "CMakeLists.txt").read_text(encoding="utf-8")
    block = re.search(r"if\(BUILD_TESTING\)(.*?)endif\(\)", text, re.S)
    assert block and "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in block.group(1)
    assert "add_subdirectory(Testing)" in block.group(1)
    assert "add_subdirectory(Python)" in (MODULE_DIR / "Testing" / "CMakeLists.txt").read_text()
    py_cmake = (MODULE_DIR / "Testing" / "Python" / "CMakeLists.txt").read_text()
    scripts = re.findall(r"slicer_add_python_unittest\(SCRIPT (\S+)\)", py_cmake)
    assert scripts
    for s in scripts:
        assert (MODULE_DIR / "Testing" / "Python" / s).is_file()


def test_bundled_resources_installed_with_the_module(tmp_path):
    text = (MODULE_DIR / "CMakeLists.txt").read_text(encoding="utf-8")
    files = _cmake_list(text, "LKSEG_BUNDLED_FILES")
    from lkseg.app.resources import BUNDLED

    # every bundled model and sample, and the licence notes beside them (the MR ones are CC BY-NC-SA)
    expected = {p.as_posix() for e in BUNDLED for p in (e.model, e.sample)}
    expected |= {"Data/SOURCE.md", "Data/SOURCE_sample_mr_t2.md", "Models/mr_t2_model.LICENSE.md"}
    assert files == sorted(expected)
    assert "${Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR}/Resources/" in text
    # lkseg.app.resources looks for <dir of the installed lkseg package>/../Resources, i.e. the same folder:
    # lay the module out as Slicer installs it and ask the installed copy where its resources are
    installed = tmp_path / "qt-scripted-modules"
    shutil.copytree(MODULE_DIR / "lkseg", installed / "lkseg", ignore=shutil.ignore_patterns("__pycache__"))
    (installed / "Resources" / "Models").mkdir(parents=True)
    (installed / "Resources" / "Models" / "default_model.safetensors").write_bytes(b"x")
    found = subprocess.run([sys.executable, "-c", "from lkseg.app.resources import default_model; print(default_model())"],
                           cwd=installed, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(installed)})
    assert found.stdout.strip() == str(installed / "Resources" / "Models" / "default_model.safetensors"), found.stderr
    absent = [f for f in files if not (ROOT / "Resources" / f).is_file()]
    assert not absent, f"bundled resources missing: {absent}"


def test_top_level_cmake_follows_the_extension_template():
    text = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    assert re.search(r"^cmake_minimum_required\(VERSION 3\.\d+\.\d+\.\.\.3\.\d+\.\d+ FATAL_ERROR\)", text, re.M)
    assert "project(LargeKernelSeg)" in text
    for var in ("HOMEPAGE", "CATEGORY", "CONTRIBUTORS", "DESCRIPTION", "ICONURL", "DEPENDS"):
        assert re.search(rf'^set\(EXTENSION_{var} "[^"]+"\)', text, re.M), f"EXTENSION_{var} missing"
    assert 'set(EXTENSION_CATEGORY "Segmentation")' in text
    assert 'set(EXTENSION_DEPENDS "PyTorch")' in text
    assert "Resources/Icons/LargeKernelSeg.png" in text  # screenshots: test_extensions_index.py
    order = ["find_package(Slicer REQUIRED)", "include(${Slicer_USE_FILE})", "add_subdirectory(LargeKernelSeg)",
             "include(${Slicer_EXTENSION_GENERATE_CONFIG})", "include(${Slicer_EXTENSION_CPACK})"]
    positions = [text.find(s) for s in order]
    assert -1 not in positions and positions == sorted(positions)


def test_icons_are_128_pixel_pngs():
    from matplotlib.image import imread

    for icon in (MODULE_DIR / "Resources" / "Icons" / "LargeKernelSeg.png", ROOT / "Resources" / "Icons" / "LargeKernelSeg.png"):
        assert icon.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        pixels = imread(icon)
        assert pixels.shape[:2] == (128, 128)
        assert pixels[..., :3].std() > 0.05  # not a blank square


def test_core_never_imports_gui_toolkits():
    offenders = {}
    for f in (MODULE_DIR / "lkseg").rglob("*.py"):
        rel = f.relative_to(MODULE_DIR)
        if rel.parts[:2] == ("lkseg", "viewer"):
            continue
        bad = _imported_roots(f) & GUI_TOOLKITS
        if bad:
            offenders[rel.as_posix()] = sorted(bad)
    assert not offenders, offenders
    for f in (MODULE_DIR / "LargeKernelSegLib").glob("*.py"):  # the glue may use VTK, never Slicer or Qt
        if f.name in SLICER_SIDE_LIB:
            assert not _imported_roots(f) & {"qt", "ctk", "PyQt5", "torch", "monai"}, f.name
            continue
        assert not _imported_roots(f) & {"slicer", "qt", "ctk", "PyQt5", "torch", "monai"}, f.name
    init = ast.parse((MODULE_DIR / "LargeKernelSegLib" / "__init__.py").read_text(encoding="utf-8"))
    relative = {n.module for n in ast.walk(init) if isinstance(n, ast.ImportFrom) and n.level == 1}
    assert not relative & {f[:-3] for f in SLICER_SIDE_LIB}, "LargeKernelSegLib/__init__ imports a Slicer-side module"


def test_module_classes_and_lazy_heavy_imports():
    tree = _module_tree()
    classes = {c.name: c for c in tree.body if isinstance(c, ast.ClassDef)}
    bases = {name: {ast.unparse(b) for b in c.bases} for name, c in classes.items()}
    assert "ScriptedLoadableModule" in bases["LargeKernelSeg"]
    assert "ScriptedLoadableModuleWidget" in bases["LargeKernelSegWidget"]
    assert "ScriptedLoadableModuleLogic" in bases["LargeKernelSegLogic"]
    assert {"ScriptedLoadableModuleTest", "selftest.PanelSelfTest"} <= bases["LargeKernelSegTest"]
    wrapped = [c.name for c in classes.values() if any(ast.unparse(d) == "parameterNodeWrapper" for d in c.decorator_list)]
    assert wrapped == ["LargeKernelSegParameterNode"]
    top_level = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            top_level |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            top_level.add(node.module.split(".")[0])
    assert not top_level & {"torch", "monai", "SimpleITK", "safetensors", "lkseg", "numpy"}, top_level
    selftest = ast.parse((MODULE_DIR / "LargeKernelSegLib" / "selftest.py").read_text(encoding="utf-8"))
    mixin = next(c for c in selftest.body if isinstance(c, ast.ClassDef) and c.name == "PanelSelfTest")
    test_methods = [f.name for f in mixin.body if isinstance(f, ast.FunctionDef)]
    assert "runTest" in test_methods and any(m.startswith("test_") for m in test_methods)
    assert "newLogic" in [f.name for f in classes["LargeKernelSegTest"].body if isinstance(f, ast.FunctionDef)]
    init = next(f for f in classes["LargeKernelSeg"].body if isinstance(f, ast.FunctionDef) and f.name == "__init__")
    src = ast.unparse(init)
    assert "['Segmentation']" in src and "acknowledgementText = glue.ACKNOWLEDGEMENT_TEXT" in src
    import LargeKernelSegLib as glue

    for paper in ("3D UX-Net", "RepUX-Net", "DeformUX-Net", "MedNeXt"):
        assert paper in glue.ACKNOWLEDGEMENT_TEXT


def test_ui_is_well_formed_and_has_every_widget_the_module_uses():
    root = ET.parse(UI_FILE).getroot()
    assert root.tag == "ui" and root.findtext("class") == "LargeKernelSeg"
    top = root.find("widget")
    assert top.get("class") == "qMRMLWidget" and top.get("name") == "LargeKernelSeg"
    widgets = {w.get("name"): w.get("class") for w in root.iter("widget")}
    names = [w.get("name") for w in root.iter("widget")]
    assert len(names) == len(set(names)), "duplicate objectName in the .ui file"
    used = set(re.findall(r"self\.ui\.(\w+)", MODULE_PY.read_text(encoding="utf-8")))
    assert used, "the module uses no widgets?"
    assert not used - set(widgets), f"used in LargeKernelSeg.py but absent from the .ui: {sorted(used - set(widgets))}"
    custom = {c.findtext("class") for c in root.iter("customwidget")}
    assert {cls for cls in widgets.values() if cls.startswith(("qMRML", "ctk"))} <= custom
    for section in ("inputsCollapsibleButton", "segmentCollapsibleButton", "exportCollapsibleButton", "fineTuneCollapsibleButton"):
        assert widgets[section] == "ctkCollapsibleButton"
    # every MRML node selector gets the scene
    receivers = {c.findtext("receiver") for c in root.iter("connection") if c.findtext("slot") == "setMRMLScene(vtkMRMLScene*)"}
    assert {n for n, cls in widgets.items() if cls == "qMRMLNodeComboBox"} <= receivers


def test_parameter_node_bindings_fit_their_widgets():
    root = ET.parse(UI_FILE).getroot()
    bound = {}
    for w in root.iter("widget"):
        for prop in w.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                bound[prop.findtext("string")] = w.get("class")
    cls = next(c for c in _module_tree().body if isinstance(c, ast.ClassDef) and c.name == "LargeKernelSegParameterNode")
    fields = {s.target.id: ast.unparse(s.annotation) for s in cls.body if isinstance(s, ast.AnnAssign)}
    assert bound and set(bound) <= set(fields), set(bound) - set(fields)
    for name, widget in bound.items():
        ann = fields[name]
        expected = {"qMRMLNodeComboBox": lambda a: a.startswith("vtkMRML"),
                    "QComboBox": lambda a: "Choice(" in a,
                    "QCheckBox": lambda a: a == "bool",
                    "QSpinBox": lambda a: a == "int" or a.startswith("Annotated[int")}[widget]
        assert expected(ann), f"{name}: {widget} cannot show {ann}"


def test_every_slicer_api_used_is_documented():
    doc = (ROOT / "docs" / "slicer_api.md").read_text(encoding="utf-8")
    chains = set()
    for node in (n for tree in _slicer_side_trees() for n in ast.walk(tree)):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute | ast.Name):
            text = ast.unparse(node)
            if text.startswith(("slicer.", "qt.")) and text.count(".") <= 3:
                chains.add(text)
    top = {c for c in chains if not any(o != c and o.startswith(c + ".") for o in chains)}
    missing = sorted(c for c in top if c.split(".")[-1] not in doc)
    assert not missing, f"document these Slicer APIs in docs/slicer_api.md: {missing}"


_QT_STANDINS = '''
from PyQt5 import QtWidgets


class qMRMLWidget(QtWidgets.QWidget):
    pass


class ctkCollapsibleButton(QtWidgets.QWidget):
    def setText(self, text): self.text = text
    def setCollapsed(self, value): self.collapsed = value


class qMRMLNodeComboBox(QtWidgets.QWidget):
    def setNodeTypes(self, value): self.nodeTypes = list(value)
    def setShowChildNodeTypes(self, value): pass
    def setAddEnabled(self, value): pass
    def setRemoveEnabled(self, value): pass
    def setNoneEnabled(self, value): self.noneEnabled = value


class ctkPathLineEdit(QtWidgets.QWidget):
    Dirs = 0x1
    def setNameFilters(self, value): self.nameFilters = list(value)
    def setSettingKey(self, value): pass
    def setFilters(self, value): self.filters = value
'''


def test_ui_loads_with_qt_uic(tmp_path, monkeypatch):
    """Qt's own .ui parser builds the panel (Slicer/CTK classes replaced by plain QWidget subclasses)."""
    import os

    from PyQt5 import QtWidgets, uic

    for name in ("qMRMLWidget", "ctkCollapsibleButton", "qMRMLNodeComboBox", "ctkPathLineEdit"):
        (tmp_path / f"{name}.py").write_text(f"from lkseg_qt_standins import {name}\n")
    (tmp_path / "lkseg_qt_standins.py").write_text(_QT_STANDINS)
    monkeypatch.syspath_prepend(str(tmp_path))
    # the scene signal/slot connections need Slicer's C++ types; they are checked by name in the test above
    tree = ET.parse(UI_FILE)
    tree.getroot().remove(tree.getroot().find("connections"))
    stripped = tmp_path / "panel.ui"
    tree.write(stripped, encoding="UTF-8", xml_declaration=True)
    if QtWidgets.QApplication.instance() is None and not os.environ.get("DISPLAY"):
        monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    panel = uic.loadUi(str(stripped))
    assert type(panel).__name__ == "qMRMLWidget"
    used = set(re.findall(r"self\.ui\.(\w+)", MODULE_PY.read_text(encoding="utf-8")))
    for name in used:
        assert isinstance(getattr(panel, name), QtWidgets.QWidget), name
    assert panel.inputVolumeSelector.nodeTypes == ["vtkMRMLScalarVolumeNode"]
    assert panel.inputVolumeSelector.property("SlicerParameterName") == "inputVolume"
    assert panel.outputSegmentationSelector.noneEnabled is True
    assert panel.datasetFolderPathLineEdit.filters == 0x1  # folders only
    assert panel.exportCollapsibleButton.collapsed is True and panel.inputsCollapsibleButton.collapsed is False
    assert not panel.segmentProgressBar.isVisibleTo(panel)  # shown only while segmenting
    assert panel.inputsCollapsibleButton.isAncestorOf(panel.deviceComboBox)
    assert panel.segmentCollapsibleButton.isAncestorOf(panel.applyButton)
    assert panel.exportCollapsibleButton.isAncestorOf(panel.exportFormatComboBox)
    assert panel.fineTuneCollapsibleButton.isAncestorOf(panel.loadResultButton)
    panel.deleteLater()
    app.processEvents()
