"""The local MSD/nnU-Net dataset: real NIfTI files, real processes, real locks."""

from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from lkseg.checkpoint.labels import Code, Label, LabelTable
from lkseg.dataset.files import DatasetError, read_nifti
from lkseg.dataset.local import LocalDataset
from lkseg.io.image import Image

ORGAN = Code("SCT", "123037004", "Anatomical Structure")


def table(*names: str, values: list[int] | None = None) -> LabelTable:
    values = values or list(range(1, len(names) + 1))
    return LabelTable([Label(v, n, (50 * v % 256, 100, 200), ORGAN, None) for v, n in zip(values, names)], name="t")


LIVER_SPLEEN = table("liver", "spleen")


def make_case(seed: int = 0, shape=(6, 7, 8), spacing=(1.5, 1.0, 2.5)) -> tuple[Image, Image]:
    rng = np.random.default_rng(seed)
    direction = np.array([[-1.0, 0, 0], [0, -1, 0], [0, 0, 1]])
    img = Image(rng.integers(-200, 300, shape).astype(np.int16), spacing, (10.0, -5.0, 3.0), direction)
    lab = np.zeros(shape, np.uint8)
    lab[1:3, 2:5, 2:6] = 1
    lab[4:6, 1:3, 5:8] = 2
    return img, img.with_array(lab)


def test_add_case_writes_msd_layout_and_round_trips(tmp_path):
    ds = LocalDataset.create(tmp_path / "ds", LIVER_SPLEEN, name="mine")
    img, lab = make_case()
    cid = ds.add_case(img, lab, LIVER_SPLEEN)
    assert cid == "case_0000"
    assert ds.image_path(cid) == tmp_path / "ds" / "imagesTr" / "case_0000_0000.nii.gz"
    data = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert data["name"] == "mine"
    assert data["labels"] == {"background": 0, "liver": 1, "spleen": 2}
    assert data["channel_names"] == {"0": "CT"} and data["modality"] == {"0": "CT"}
    assert data["numTraining"] == 1 and data["file_ending"] == ".nii.gz"
    assert data["training"] == [{"image": "./imagesTr/case_0000_0000.nii.gz", "label": "./labelsTr/case_0000.nii.gz"}]
    assert ds.table.same_as(LIVER_SPLEEN)
    back_img, back_lab = ds.read_case(cid)
    assert back_img.same_grid(img) and np.array_equal(back_img.array, img.array)
    assert np.array_equal(back_lab.array, lab.array)
    assert ds.check() == []
    # MONAI reads the same list
    from monai.data import load_decathlon_datalist
    items = load_decathlon_datalist(str(tmp_path / "ds" / "dataset.json"), data_list_key="training",
                                    base_dir=str(tmp_path / "ds"))
    assert Path(items[0]["image"]).is_file() and Path(items[0]["label"]).is_file()


def test_labels_off_grid_or_unknown_values_are_refused(tmp_path):
    ds = LocalDataset.create(tmp_path / "ds", LIVER_SPLEEN)
    img, lab = make_case()
    shifted = Image(lab.array, lab.spacing, (11.0, -5.0, 3.0), lab.direction)
    with pytest.raises(DatasetError, match="grid"):
        ds.add_case(img, shifted, LIVER_SPLEEN)
    bad = lab.array.copy()
    bad[0, 0, 0] = 7
    with pytest.raises(DatasetError, match=r"\[7\]"):
        ds.add_case(img, lab.with_array(bad), LIVER_SPLEEN)
    assert ds.cases() == []


def test_disagreeing_table_is_refused_or_mapped_by_name(tmp_path):
    ds = LocalDataset.create(tmp_path / "ds", LIVER_SPLEEN)
    img, lab = make_case()
    swapped = table("spleen", "Liver")  # value 1 = spleen here, 2 = liver
    with pytest.raises(DatasetError, match="disagrees"):
        ds.add_case(img, lab, swapped)
    cid = ds.add_case(img, lab, swapped, map_by_name=True)
    stored = read_nifti(ds.label_path(cid)).array
    assert np.array_equal(stored == 2, lab.array == 1)  # our spleen (1) became the dataset's spleen (2)
    assert np.array_equal(stored == 1, lab.array == 2)
    with pytest.raises(DatasetError, match="kidney"):
        ds.add_case(img, lab, table("kidney", "spleen"), map_by_name=True)
    # a compatible subset with other colours is accepted as is
    sub = LabelTable([Label(1, "Liver", (1, 2, 3), None, None)])
    only_liver = lab.with_array((lab.array == 1).astype(np.uint8))
    ds.add_case(img, only_liver, sub, case_id="sub")
    assert ds.cases() == [cid, "sub"]


def test_reexport_keeps_history(tmp_path):
    ds = LocalDataset.create(tmp_path / "ds", LIVER_SPLEEN)
    img, lab = make_case()
    ds.add_case(img, lab, LIVER_SPLEEN, case_id="p1")
    first_bytes = ds.label_path("p1").read_bytes()
    corrected = lab.array.copy()
    corrected[0] = 1
    ds.add_case(img, lab.with_array(corrected), LIVER_SPLEEN, case_id="p1")
    hist = list((tmp_path / "ds" / "labelsTr" / "history").glob("p1.*.nii.gz"))
    assert len(hist) == 1 and hist[0].read_bytes() == first_bytes
    assert np.array_equal(read_nifti(ds.label_path("p1")).array, corrected)
    # the same image again is not duplicated; a different image is kept in history
    assert not (tmp_path / "ds" / "imagesTr" / "history").exists()
    img2 = img.with_array(img.array + 1)
    ds.add_case(img2, lab, LIVER_SPLEEN, case_id="p1")
    assert len(list((tmp_path / "ds" / "imagesTr" / "history").glob("p1_0000.*.nii.gz"))) == 1
    assert len(list((tmp_path / "ds" / "labelsTr" / "history").glob("p1.*.nii.gz"))) == 2
    assert ds.cases() == ["p1"] and ds.check() == []


def _add_many(root: str, worker: int, n: int) -> None:
    ds = LocalDataset(root)
    for i in range(n):
        img, lab = make_case(seed=worker * 100 + i)
        ds.add_case(img, lab, LIVER_SPLEEN, case_id=f"w{worker}_{i}")
    for i in range(2):  # and some with automatic ids
        img, lab = make_case(seed=worker * 100 + 50 + i)
        ds.add_case(img, lab, LIVER_SPLEEN)


def test_concurrent_writers_never_corrupt_dataset_json(tmp_path):
    root = tmp_path / "ds"
    LocalDataset.create(root, LIVER_SPLEEN)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_add_many, args=(str(root), w, 5)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    data = json.loads((root / "dataset.json").read_text())
    ids = LocalDataset(root).cases()
    assert len(ids) == len(set(ids)) == 21 == data["numTraining"]
    assert {f"w{w}_{i}" for w in range(3) for i in range(5)} <= set(ids)
    assert LocalDataset(root).check() == []


def test_check_finds_each_problem(tmp_path):
    root = tmp_path / "ds"
    ds = LocalDataset.create(root, LIVER_SPLEEN)
    img, lab = make_case()
    for c in ("a", "b", "c", "d"):
        ds.add_case(img, lab, LIVER_SPLEEN, case_id=c)
    assert ds.check() == []
    ds.label_path("a").unlink()                                     # missing file
    moved = sitk.ReadImage(str(ds.label_path("b")))                  # geometry mismatch
    moved.SetOrigin((0.0, 0.0, 0.0))
    sitk.WriteImage(moved, str(ds.label_path("b")))
    arr = lab.array.copy()                                            # unknown label value
    arr[0, 0, 0] = 9
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(sitk.ReadImage(str(ds.label_path("c"))))
    sitk.WriteImage(out, str(ds.label_path("c")))
    (root / "labelsTr" / "stray.nii.gz").write_bytes(ds.label_path("d").read_bytes())  # not listed
    problems = ds.check()
    text = "\n".join(problems)
    assert "case a: missing file labelsTr/a.nii.gz" in text
    assert "case b: label geometry differs" in text
    assert "case c: unknown label values [9]" in text
    assert "labelsTr/stray.nii.gz is not listed" in text
    assert len(problems) == 4


def test_open_missing_dataset_says_what_to_do(tmp_path):
    with pytest.raises(DatasetError, match="dataset add"):
        LocalDataset(tmp_path)


def test_check_never_reads_outside_the_dataset(tmp_path):
    import json

    ds = LocalDataset.create(tmp_path / "ds", LIVER_SPLEEN)
    secret = tmp_path / "secret_seg.nii.gz"
    secret.write_bytes(b"not the dataset's")
    data = json.loads((ds.root / "dataset.json").read_text())
    data["training"] = [{"image": "../secret_0000.nii.gz", "label": "../secret_seg.nii.gz"},
                        {"image": "../missing_0000.nii.gz", "label": "../../missing.nii.gz"}]
    data["numTraining"] = 2
    (ds.root / "dataset.json").write_text(json.dumps(data))
    problems = ds.check()
    assert sum("points outside the dataset folder" in p for p in problems) == 2, problems
    assert not any("unreadable" in p or "missing file" in p for p in problems)
