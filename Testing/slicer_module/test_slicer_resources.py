"""What the module shows and ships: translatable texts naming real buttons, the help link, its terminology
file (checked against the label tables, against 3D Slicer's own lists and loaded by Slicer's real
terminology logic) and its Sample Data source (checksum, thumbnail)."""

from __future__ import annotations

import ast
import json
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULE_DIR = ROOT / "LargeKernelSeg"
sys.path.insert(0, str(MODULE_DIR))

import LargeKernelSegLib as glue  # noqa: E402
from LargeKernelSegLib import sampledata, segments  # noqa: E402

SLICER_CODES = json.loads((ROOT / "Testing" / "Data" / "slicer_terminology" / "codes.json").read_text())
GENERAL_ANATOMY = "Segmentation category and type - 3D Slicer General Anatomy list"
DICOM_MASTER = "Segmentation category and type - DICOM master list"


def _button_texts() -> set[str]:
    root = ET.parse(MODULE_DIR / "Resources" / "UI" / "LargeKernelSeg.ui").getroot()
    return {w.find("property[@name='text']/string").text for w in root.iter("widget")
            if w.get("class") == "QPushButton" and w.find("property[@name='text']/string") is not None} | {"Cancel"}


def test_messages_name_buttons_that_exist():
    sources = [MODULE_DIR / "LargeKernelSeg.py", *sorted((MODULE_DIR / "LargeKernelSegLib").glob("*.py"))]
    named = set()
    for f in sources:
        named |= set(re.findall(r"\b(?:Press|Click|press|click) ([A-Z][\w-]*(?: [a-z-]+)*?)(?= again| to|[.,])", f.read_text()))
    assert "Segment" in named  # the missing-package message
    assert named <= _button_texts(), f"messages name buttons that the panel does not have: {named - _button_texts()}"
    assert "Apply" not in " ".join(named)


def test_panel_texts_are_translatable():
    """Every literal the panel shows (status texts, button texts, titles) goes through ``_()``."""
    tree = ast.parse((MODULE_DIR / "LargeKernelSeg.py").read_text(encoding="utf-8"))
    bare = []
    for node in ast.walk(tree):
        shown = []
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Attribute) and t.attr in ("text", "title")
                                                for t in node.targets):
            shown.append(node.value)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("setStatus", "addItem"):
            shown += node.args[:1]
        for value in shown:
            for part in ast.walk(value):
                if isinstance(part, ast.Constant) and isinstance(part.value, str) and part.value.strip(" ,.:"):
                    if not any(isinstance(c, ast.Call) and isinstance(c.func, ast.Name) and c.func.id == "_"
                               and part in list(ast.walk(c)) for c in ast.walk(value)):
                        bare.append(f"line {value.lineno}: {ast.unparse(value)}")
    assert not bare, bare
    assert "from slicer.i18n import tr as _" in (MODULE_DIR / "LargeKernelSeg.py").read_text()


def test_help_links_to_the_modules_documentation():
    assert glue.DOCUMENTATION_URL in glue.HELP_LINK and glue.HELP_LINK.count("<a href=") == 1
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "## The Slicer extension" in readme and glue.DOCUMENTATION_URL.endswith("#the-slicer-extension")


def _our_terminology() -> dict:
    return json.loads(segments.TERMINOLOGY_FILE.read_text(encoding="utf-8"))


def _slicer_types(context: str) -> dict[tuple[str, str], dict]:
    return {(cat["code"][1], t["code"][1]): t for cat in SLICER_CODES["lists"][context] for t in cat["types"]}


def test_every_code_of_our_terminology_is_in_slicers_dicom_master_list():
    master, general = _slicer_types(DICOM_MASTER), _slicer_types(GENERAL_ANATOMY)
    for category in _our_terminology()["SegmentationCodes"]["Category"]:
        for kind in category["Type"]:
            key = (category["CodeValue"], kind["CodeValue"])
            assert key in master, f"{kind['CodeMeaning']} ({kind['CodeValue']}) is not in Slicer's DICOM master list"
            assert [kind["CodingSchemeDesignator"], kind["CodeValue"], kind["CodeMeaning"]] == master[key]["code"]
            for modifier in kind.get("Modifier", []):
                assert [modifier["CodingSchemeDesignator"], modifier["CodeValue"], modifier["CodeMeaning"]] in master[key]["modifiers"]
    # the reason for our own list: two of our organs are missing from the General Anatomy list
    assert {("123037004", "64131007"), ("123037004", "32764006")} & set(general) == set()


def test_every_builtin_label_resolves_in_our_terminology_loaded_by_slicer(tmp_path):
    from real_mrml import import_slicer

    slicer = import_slicer()
    from lkseg.checkpoint.labels import BUILTIN_TABLES

    logic = slicer.vtkSlicerTerminologiesModuleLogic()
    context = _our_terminology()["SegmentationCategoryTypeContextName"]
    assert logic.LoadTerminologyFromFile(str(segments.TERMINOLOGY_FILE))
    assert logic.IsTerminologyContextLoaded(context)
    loaded = set()  # (category, type, modifier or "") as Slicer's logic read them from the file
    category, kind, modifier = (slicer.vtkSlicerTerminologyCategory(), slicer.vtkSlicerTerminologyType(),
                                slicer.vtkSlicerTerminologyType())
    for i in range(logic.GetNumberOfCategoriesInTerminology(context)):
        assert logic.GetNthCategoryInTerminology(context, i, category)
        for j in range(logic.GetNumberOfTypesInTerminologyCategory(context, category)):
            assert logic.GetNthTypeInTerminologyCategory(context, category, j, kind)
            loaded.add((category.GetCodeValue(), kind.GetCodeValue(), ""))
            for k in range(logic.GetNumberOfTypeModifiersInTerminologyType(context, category, kind)):
                assert logic.GetNthTypeModifierInTerminologyType(context, category, kind, k, modifier)
                loaded.add((category.GetCodeValue(), kind.GetCodeValue(), modifier.GetCodeValue()))
    assert len(loaded) >= 16
    checked = 0
    for table in BUILTIN_TABLES.values():
        for spec in glue.segment_specs(table):
            label = table.by_value(spec.value)
            if label.type is None:
                assert spec.terminology == ""
                continue
            assert spec.terminology.startswith(context + "~"), spec.name
            entry = slicer.vtkSlicerTerminologyEntry()
            assert logic.DeserializeTerminologyEntry(spec.terminology, entry)
            key = (entry.GetCategoryObject().GetCodeValue(), entry.GetTypeObject().GetCodeValue(),
                   entry.GetTypeModifierObject().GetCodeValue() or "")
            assert key == (label.category.value, label.type.value, label.modifier.value if label.modifier else "")
            assert key in loaded, f"{spec.name}: {key} is not in the terminology its entry names"
            checked += 1
    assert checked >= 30


def test_sample_data_source_carries_the_files_checksum_and_a_thumbnail():
    from PIL import Image

    from lkseg.app import resources

    sample = resources.sample_ct()
    sources = sampledata.sample_sources(sample.parent)
    assert [s["fileNames"] for s in sources] == ["sample_ct.nii.gz", "sample_mr_t2.nii.gz"]  # CT and MR
    for source in sources:
        path = Path(source["uris"].removeprefix("file://"))
        assert path.parent == sample.parent.resolve() and path.is_file()
        assert source["checksums"] == "SHA256:" + sampledata.sha256_of(path)
        thumbnail = Image.open(source["thumbnailFileName"])
        assert thumbnail.size == (128, 128) and Path(source["thumbnailFileName"]).stat().st_size < 50_000
    assert sampledata.sample_sources(None) == [] and sampledata.sample_sources(Path("/nonexistent")) == []


@pytest.mark.parametrize("version, plugins, expected", [
    ((5, 10), [], "QuantitativeReporting"), ((5, 11), ["DICOMScalarVolumePlugin"], "QuantitativeReporting"),
    ((5, 10), ["DICOMSegmentationPlugin"], None), ((5, 12), ["DICOMSegmentationPlugin"], None),
    ((5, 12), [], "not loaded")])
def test_dicom_seg_needs(version, plugins, expected):
    from LargeKernelSegLib.dicomseg import dicom_seg_problem

    problem = dicom_seg_problem(version, plugins)
    assert (problem is None) if expected is None else (expected in problem and "NIfTI" in problem)
