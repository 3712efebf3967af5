"""The Slicer module's glue (LargeKernelSegLib) with real VTK objects, outside Slicer."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from vtkmodules.vtkCommonDataModel import vtkImageData  # noqa: E402
from vtkmodules.vtkCommonMath import vtkMatrix4x4  # noqa: E402

MODULE_DIR = Path(__file__).resolve().parents[2] / "LargeKernelSeg"
sys.path.insert(0, str(MODULE_DIR))

import LargeKernelSegLib as glue  # noqa: E402
from geometry_cases import oblique_flipped_ijk_to_ras  # noqa: E402
from lkseg.errors import Cancelled, LkSegError  # noqa: E402
from lkseg.io.image import Image


def test_volume_arrays_to_image_and_back_is_identity():
    m = oblique_flipped_ijk_to_ras()
    array = np.random.default_rng(0).integers(0, 9, size=(5, 6, 7)).astype(np.int16)
    image = glue.image_from_volume_arrays(array, glue.numpy_to_vtk_matrix(m))
    # LPS geometry: the i axis points along RAS (cos, sin, 0) -> LPS (-cos, -sin, 0)
    np.testing.assert_allclose(image.spacing, (0.7, 0.9, 2.5))
    np.testing.assert_allclose(image.direction[:, 0], [-np.cos(np.deg2rad(30)), -np.sin(np.deg2rad(30)), 0], atol=1e-12)
    np.testing.assert_allclose(image.direction[:, 2], [0, 0, -1])
    np.testing.assert_allclose(image.origin, (12.5, -30.0, 101.0))
    # the voxel (i, j, k) = (6, 0, 4) lands where the Slicer matrix puts it
    ras = m @ np.array([6, 0, 4, 1.0])
    lps = image.index_to_physical([[6, 0, 4]])[0]
    np.testing.assert_allclose(lps, [-ras[0], -ras[1], ras[2]], atol=1e-9)

    labels = image.with_array((array % 4).astype(np.int64))
    vtk_image, matrix = glue.labels_to_vtk_image(labels)
    assert isinstance(vtk_image, vtkImageData) and isinstance(matrix, vtkMatrix4x4)
    assert vtk_image.GetDimensions() == (7, 6, 5)
    assert vtk_image.GetOrigin() == (0.0, 0.0, 0.0) and vtk_image.GetSpacing() == (1.0, 1.0, 1.0)
    assert vtk_image.GetScalarTypeAsString() == "unsigned char"
    np.testing.assert_allclose(glue.vtk_matrix_to_numpy(matrix), m, atol=1e-12)
    back = glue.array_from_vtk_image(vtk_image)
    np.testing.assert_array_equal(back, labels.array)
    # VTK's own index -> point mapping agrees with numpy's [k, j, i] order
    point_id = vtk_image.ComputePointId([6, 0, 4])
    assert vtk_image.GetPointData().GetScalars().GetTuple1(point_id) == labels.array[4, 0, 6]
    again = glue.image_from_volume_arrays(back, matrix)
    assert again.same_grid(labels)


def test_label_maps_keep_large_values_and_reject_bad_ones():
    img = Image(np.array([[[0, 300]]]))
    vtk_image, _ = glue.labels_to_vtk_image(img)
    assert vtk_image.GetScalarTypeAsString() == "unsigned short"
    with pytest.raises(ValueError):
        glue.labels_to_vtk_image(Image(np.array([[[0.0, 1.5]]])))
    with pytest.raises(ValueError):
        glue.labels_to_vtk_image(Image(np.array([[[-1, 2]]])))


def test_segment_specs_carry_names_colours_and_snomed_codes():
    from lkseg.checkpoint import labels
    table = labels.LabelTable([
        labels.Label(1, "spleen", (157, 108, 162), labels.Code("SCT", "123037004", "Anatomical Structure"),
                     labels.Code("SCT", "78961009", "Spleen")),
        labels.Label(6, "liver", (221, 130, 101), labels.Code("SCT", "123037004", "Anatomical Structure"),
                     labels.Code("SCT", "10200004", "Liver")),
        labels.Label(3, "custom blob", (10, 20, 30), None, None),
    ], name="test")
    specs = glue.segment_specs(table)
    assert [s.value for s in specs] == [1, 3, 6]
    assert [s.name for s in specs] == ["spleen", "custom blob", "liver"]
    assert [s.segment_id for s in specs] == ["spleen", "custom_blob", "liver"]
    np.testing.assert_allclose(specs[2].color, (221 / 255, 130 / 255, 101 / 255))
    liver = specs[2].terminology
    assert liver == ("Segmentation category and type - LargeKernelSeg~SCT^123037004^Anatomical "
                     "Structure~SCT^10200004^Liver~^^~Anatomic codes - DICOM master list~^^~^^")
    # a code of the user's own that our terminology does not hold names Slicer's General Anatomy list
    own = labels.Label(2, "thing", (1, 2, 3), labels.Code("SCT", "123037004", "Anatomical Structure"),
                       labels.Code("SCT", "999999", "Thing"))
    assert glue.terminology_entry(own).startswith("Segmentation category and type - 3D Slicer General Anatomy list~")
    parsed = glue.parse_terminology_entry(specs[0].terminology)
    assert parsed["category"] == ("SCT", "123037004", "Anatomical Structure")
    assert parsed["type"] == ("SCT", "78961009", "Spleen")
    assert parsed["type_modifier"] is None and parsed["region"] is None
    assert specs[1].terminology == ""
    assert glue.segment_id_list(specs) == ["spleen", "", "custom_blob", "", "", "liver"]
    # an edited segment maps back by its value tag, else by its (possibly renamed) name
    assert glue.label_value_for_segment("renamed", "6", table) == 6
    assert glue.label_value_for_segment("Custom Blob", None, table) == 3
    assert glue.label_value_for_segment("tumour", None, table) is None
    back = glue.table_from_text(glue.table_to_text(table))
    assert back.same_as(table)


def test_segment_specs_from_a_builtin_card_table():
    from lkseg.checkpoint import labels
    table = labels.get_table("BTCV")
    specs = glue.segment_specs(table)
    assert len(specs) == 13
    for spec in specs:
        label = table.by_value(spec.value)
        assert spec.name == label.name
        assert all(0.0 <= c <= 1.0 for c in spec.color)
        if label.type is not None:
            assert glue.parse_terminology_entry(spec.terminology)["type"] == (
                label.type.scheme, label.type.value, label.type.meaning)


def test_compose_label_map_orders_overlaps_and_checks_shapes():
    a = np.zeros((2, 3, 4), np.uint8); a[0] = 1
    b = np.zeros((2, 3, 4), np.uint8); b[:, 0] = 1
    out = glue.compose_label_map([(2, a), (7, b)], (2, 3, 4))
    assert out[0, 0, 0] == 7 and out[0, 1, 0] == 2 and out[1, 1, 0] == 0 and out[1, 0, 3] == 7
    with pytest.raises(ValueError):
        glue.compose_label_map([(1, np.zeros((3, 3, 3)))], (2, 3, 4))


def test_case_ids_and_export_paths_are_sanitised(tmp_path):
    assert glue.sanitize_case_id("../../etc/passwd") == "etc_passwd"
    assert glue.sanitize_case_id("Patient: Müller / CT 2") == "Patient_Muller_CT_2"
    assert glue.sanitize_case_id("...") == "case"
    assert glue.sanitize_case_id("CON") == "CON_"
    assert len(glue.sanitize_case_id("x" * 500)) == 64
    p = glue.export_path(tmp_path, "Abdomen CT*1", "NIfTI")
    assert p == tmp_path / "Abdomen_CT_1.nii.gz"
    p.write_bytes(b"x")
    assert glue.export_path(tmp_path, "Abdomen CT*1", "NIfTI") == tmp_path / "Abdomen_CT_1_2.nii.gz"
    assert glue.export_path(tmp_path, "Abdomen CT*1", "NIfTI", overwrite=True) == p
    assert glue.export_path(tmp_path, "a", "Slicer segmentation (.seg.nrrd)").name == "a.seg.nrrd"
    with pytest.raises(ValueError):
        glue.export_path(tmp_path, "a", "jpeg")


def test_recent_checkpoints_order_unique_max_and_corruption(tmp_path):
    settings = glue.PanelSettings(tmp_path / "cfg", max_recent=3)
    assert settings.recent_checkpoints() == []
    files = []
    for name in "abcd":
        f = tmp_path / f"{name}.safetensors"
        f.write_bytes(b"")
        files.append(str(f.resolve()))
        settings.add_recent_checkpoint(f)
    assert settings.recent_checkpoints() == [files[3], files[2], files[1]]
    settings.add_recent_checkpoint(files[1])
    assert settings.recent_checkpoints() == [files[1], files[3], files[2]]
    settings.set_dataset_folder(tmp_path / "ds")
    fresh = glue.PanelSettings(tmp_path / "cfg", max_recent=3)  # persisted
    assert fresh.recent_checkpoints() == [files[1], files[3], files[2]]
    assert fresh.dataset_folder() == str(tmp_path / "ds")
    assert fresh.remove_recent_checkpoint(files[3]) == [files[1], files[2]]
    assert not list((tmp_path / "cfg").glob("*.tmp"))
    settings.path.write_text('{"recent_checkpoints": ["x", ')  # truncated by a crash
    assert settings.recent_checkpoints() == [] and settings.dataset_folder() == ""
    settings.add_recent_checkpoint(files[0])
    assert json.loads(settings.path.read_text())["recent_checkpoints"] == [files[0]]
    settings.path.write_text('["not", "an", "object"]')
    assert settings.recent_checkpoints() == []


def test_error_wording_is_plain_and_specific():
    assert glue.user_message(Cancelled()) == "Stopped: the operation was cancelled."
    msg = glue.user_message(LkSegError("input.nii.gz has 4 dimensions; choose a 3D volume"))
    assert msg == "Input.nii.gz has 4 dimensions; choose a 3D volume."

    class CheckpointError(LkSegError):
        pass

    msg = glue.user_message(CheckpointError("model.safetensors has no model card"))
    assert msg.startswith("The model file cannot be used. Model.safetensors has no model card.")
    assert "bundled default" in msg
    assert "memory" in glue.user_message(RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert "monai" in glue.user_message(ModuleNotFoundError("No module named 'monai'", name="monai"))
    unexpected = glue.user_message(KeyError("shape"))
    assert "log" in unexpected and "KeyError" not in unexpected and "Traceback" not in unexpected


def test_real_error_classes_map_when_available():
    for mod, cls, words in [("lkseg.checkpoint", "CheckpointError", "model file"),
                            ("lkseg.dataset", "DatasetError", "dataset folder"),
                            ("lkseg.io.imageio", "ImageReadError", "image could not be read")]:
        try:
            module = __import__(mod, fromlist=[cls])
        except ImportError:
            continue
        if hasattr(module, cls):
            assert words in glue.user_message(getattr(module, cls)("x.nii is broken"))


def test_dependency_check_matches_pyproject_and_finds_missing():
    import tomllib

    pyproject = tomllib.loads((MODULE_DIR.parent / "pyproject.toml").read_text())
    names = {dep.split(">")[0].split("=")[0].split("<")[0].strip().lower() for dep in pyproject["project"]["dependencies"]}
    # numpy ships with Slicer; the DICOM SEG/DICOMweb stack serves the CLI and viewer (Slicer exports SEG itself)
    assert {n.lower() for n in glue.REQUIREMENTS} == names - {"numpy", "pydicom", "highdicom", "dicomweb-client",
                                                                "requests"}
    assert glue.missing_modules() == []  # this environment has everything
    assert glue.missing_modules(["torch", "no_such_module_xyz"]) == ["no_such_module_xyz"]
    assert glue.pip_requirements(["torch", "monai"]) == ["monai>=1.4"]
    assert "PyTorch extension" in glue.install_prompt(["torch", "monai"])


def test_requirements_file_parsing(tmp_path):
    from LargeKernelSegLib.dependencies import read_requirements

    f = tmp_path / "requirements.txt"
    f.write_text("# comment\n\nPillow>=10  # images\nmonai[nibabel]>=1.4\nSimpleITK==2.3.1; python_version>'3'\ntqdm\n")
    assert read_requirements(f) == {"PIL": "Pillow>=10", "monai": "monai[nibabel]>=1.4",
                                    "SimpleITK": "SimpleITK==2.3.1; python_version>'3'", "tqdm": "tqdm"}


def test_job_view_reads_progress_and_status(tmp_path):
    rows = [{"step": 10, "epoch": 0, "loss": 0.9, "lr": 1e-4, "val_dice": None, "eta_s": 120, "time": 1},
            {"step": 20, "epoch": 0, "loss": 0.5, "lr": 1e-4, "val_dice": 0.61, "eta_s": 60, "time": 2}]
    (tmp_path / "progress.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + '\n{"step": 3')
    read = glue.read_progress(tmp_path)
    assert read == rows
    view = glue.job_view({"state": "running"}, read, total_steps=40)
    assert view.fraction == 0.5 and not view.finished and view.best is None
    assert "loss 0.5000" in view.text and "validation Dice 0.610" in view.text and "1 min left" in view.text
    done = glue.job_view({"state": "done"}, read + [{"event": "done", "best": "/j/checkpoints/best.safetensors"}])
    assert done.finished and done.fraction == 1.0 and done.best == "/j/checkpoints/best.safetensors"
    failed = glue.job_view({"state": "failed", "error": "Traceback...\nDatasetError: no cases"}, [])
    assert failed.finished and "no cases" in failed.text


def test_card_summary_when_cards_exist():
    from lkseg.checkpoint import card as card_mod
    from lkseg.checkpoint import labels
    card = card_mod.ModelCard(architecture="uxnet", hyperparameters={}, in_channels=1,
                              labels=labels.get_table("FLARE21"), preprocessing=card_mod.Preprocessing(spacing=(1.5, 1.5, 2.0)),
                              inference=card_mod.InferenceSettings(), provenance=card_mod.Provenance(
                                  parent_sha256=None, training_data={"dataset": "FLARE21", "cases": ["a", "b"]},
                                  metrics={"per_class": {"liver": 0.5}, "dice": 0.9},
                                  created="2026-01-01T00:00:00Z", lkseg_version="0.1.0", notes="word " * 200))
    text = glue.card_summary(card)
    assert "uxnet" in text and "1.5 x 1.5 x 2 mm" in text and "FLARE21" in text and "dice 0.900" in text
    assert "per_class" not in text and "['a', 'b']" not in text  # nested values stay out of the summary
    assert len(text.splitlines()[-1]) <= 400 and text.endswith("...")
    assert glue.segment_specs(card) == glue.segment_specs(card.labels)


def test_terminology_matches_the_seg_nrrd_writer_and_keeps_laterality():
    from lkseg.checkpoint import labels
    from lkseg.io import export
    table = labels.get_table("BTCV")
    with_modifier = [lab for lab in table.labels if getattr(lab, "modifier", None) is not None]
    assert with_modifier, "BTCV has left/right kidneys and adrenal glands"
    for spec in glue.segment_specs(table):
        label = table.by_value(spec.value)
        # the same codes; the panel's entries name the module's own terminology (loaded in Slicer at startup),
        # the .seg.nrrd writer of the core names Slicer's General Anatomy list
        ours = spec.terminology.split("~")
        written = export.terminology_tag(label).removeprefix("TerminologyEntry:").split("~")
        assert ours[0] == "Segmentation category and type - LargeKernelSeg" and ours[1:] == written[1:]
    kidneys = [glue.parse_terminology_entry(s.terminology) for s in glue.segment_specs(table) if "kidney" in s.name.lower()]
    assert len({k["type_modifier"] for k in kidneys}) == 2  # left and right stay distinct
