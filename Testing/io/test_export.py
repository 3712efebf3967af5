"""Export: Slicer .seg.nrrd read back by two independent readers, NIfTI labels, volumes, overlay PNG."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from lkseg.checkpoint.labels import BTCV, Code, Label, LabelTable
from lkseg.errors import LkSegError
from lkseg.io.export import (
    COUNT_CHUNK_VOXELS,
    label_voxel_counts,
    organ_volumes,
    overlay_png,
    terminology_tag,
    write_labels,
    write_volumes,
)
from lkseg.io.image import Image
from lkseg.io.imageio import read_image


def labelled(dtype=np.uint8) -> Image:
    rng = np.random.default_rng(5)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    arr = np.zeros((6, 7, 8), dtype)
    arr[1:4, 2:5, 3:7] = 6  # liver in BTCV
    arr[4:6, 0:2, 0:3] = 1  # spleen
    return Image(arr, (0.8, 1.25, 2.5), (10.0, -20.0, 30.5), q)


def test_seg_nrrd_read_back_with_pynrrd_and_simpleitk(tmp_path: Path) -> None:
    import nrrd

    image = labelled()
    path = write_labels(image, BTCV, tmp_path / "labels.seg.nrrd")
    data, header = nrrd.read(str(path))
    # pynrrd gives data in (i, j, k) order
    np.testing.assert_array_equal(data.transpose(2, 1, 0), image.array)
    assert header["space"] == "left-posterior-superior"
    np.testing.assert_allclose(header["space directions"], (image.direction @ np.diag(image.spacing)).T)
    np.testing.assert_allclose(header["space origin"], image.origin)
    segments = {}
    for n in range(len(BTCV)):
        value = int(header[f"Segment{n}_LabelValue"])
        segments[value] = n
        # each segment's name, colour and label value belong to one organ of the table
        assert header[f"Segment{n}_Name"] == BTCV.by_value(value).name
        colour = [float(c) for c in header[f"Segment{n}_Color"].split()]
        np.testing.assert_allclose(colour, np.array(BTCV.by_value(value).color) / 255.0, atol=1e-6)
    assert sorted(segments) == BTCV.values
    # the voxels Slicer reads as segment "spleen" are exactly the spleen voxels written
    spleen = BTCV.by_name("spleen")
    assert int(header[f"Segment{segments[spleen.value]}_LabelValue"]) == spleen.value
    np.testing.assert_array_equal(data.transpose(2, 1, 0) == spleen.value, image.array == 1)
    liver = BTCV.by_name("liver")
    n = segments[liver.value]
    assert header[f"Segment{n}_Name"] == "liver"
    assert header[f"Segment{n}_Layer"] == "0"
    assert header[f"Segment{n}_Extent"] == "0 7 0 6 0 5"
    colour = [float(c) for c in header[f"Segment{n}_Color"].split()]
    np.testing.assert_allclose(colour, np.array(liver.color) / 255.0, atol=1e-6)
    tags = header[f"Segment{n}_Tags"]
    assert tags.startswith("TerminologyEntry:Segmentation category and type - 3D Slicer General Anatomy list~"
                           "SCT^123037004^Anatomical Structure~SCT^10200004^Liver~")
    assert tags.endswith("~Anatomic codes - DICOM master list~^^~^^|")
    assert header["Segmentation_MasterRepresentation"] == "Binary labelmap"

    # SimpleITK reads the same voxels and geometry, and sees the custom fields
    img = sitk.ReadImage(str(path))
    back = read_image(path)
    np.testing.assert_array_equal(back.array, image.array)
    assert back.same_grid(image, atol=1e-9)
    assert img.GetMetaData(f"Segment{n}_Name") == "liver"


def test_terminology_with_laterality() -> None:
    kidney = Label(2, "right kidney", (1, 2, 3), Code("SCT", "123037004", "Anatomical Structure"),
                   Code("SCT", "64033007", "Kidney"), Code("SCT", "24028007", "Right"))
    assert "~SCT^64033007^Kidney~SCT^24028007^Right~" in terminology_tag(kidney)
    assert terminology_tag(Label(1, "x", (1, 2, 3))) == ""


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_label_maps_round_trip(tmp_path: Path, suffix: str) -> None:
    image = labelled(np.int64)
    back = read_image(write_labels(image, BTCV, tmp_path / f"l{suffix}"))
    assert back.array.dtype == np.uint8
    np.testing.assert_array_equal(back.array, image.array)
    assert back.same_grid(image, atol=1e-4)


def test_many_classes_use_uint16(tmp_path: Path) -> None:
    table = LabelTable([Label(v, f"s{v}", (v % 256, 0, 0)) for v in range(1, 301)])
    arr = np.zeros((3, 4, 5), np.int32)
    arr[0, 0, 0] = 300
    back = read_image(write_labels(Image(arr), table, tmp_path / "big.seg.nrrd"))
    assert back.array.dtype == np.uint16 and back.array[0, 0, 0] == 300


def test_unknown_suffix(tmp_path: Path) -> None:
    with pytest.raises(LkSegError, match="unknown label file type"):
        write_labels(labelled(), BTCV, tmp_path / "labels.png")


def test_label_counts_match_bincount_in_memory_that_does_not_grow_with_the_volume() -> None:
    """Counting a CT-sized label map must not widen it to 8-byte integers all at once (630 MB for a
    512 x 512 x 300 map): chunks keep the extra memory near 8 bytes x COUNT_CHUNK_VOXELS."""
    import tracemalloc

    rng = np.random.default_rng(2)
    big = rng.integers(0, 6, size=(80, 512, 512), dtype=np.uint8)  # 21 M voxels, 5 chunks
    tracemalloc.start()
    counts = label_voxel_counts(big, minlength=3)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert np.array_equal(counts, np.bincount(big.ravel()))
    assert peak < 2 * 8 * COUNT_CHUNK_VOXELS < 8 * big.size, f"{peak / 2**20:.0f} MiB"
    assert np.array_equal(label_voxel_counts(np.array([[0, 9]], np.uint16), minlength=3), [1] + [0] * 8 + [1])
    assert len(label_voxel_counts(np.zeros(0, np.uint8), minlength=4)) == 4
    with pytest.raises(LkSegError, match="non-negative integers"):
        label_voxel_counts(np.array([-1, 2], np.int16))
    with pytest.raises(LkSegError, match="non-negative integers"):
        label_voxel_counts(np.array([0.5]))


def test_volumes_in_ml(tmp_path: Path) -> None:
    image = labelled()
    rows = organ_volumes(image, BTCV)
    by_name = {r["name"]: r for r in rows}
    voxel_ml = 0.8 * 1.25 * 2.5 / 1000.0
    assert by_name["liver"]["voxels"] == 3 * 3 * 4
    assert by_name["liver"]["volume_ml"] == pytest.approx(36 * voxel_ml)
    assert by_name["spleen"]["voxels"] == 2 * 2 * 3
    assert by_name["aorta"]["voxels"] == 0
    assert len(rows) == len(BTCV)

    write_volumes(rows, tmp_path / "v.json")
    assert json.loads((tmp_path / "v.json").read_text()) == rows
    write_volumes(rows, tmp_path / "v.csv")
    with open(tmp_path / "v.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert float(table[BTCV.values.index(6)]["volume_ml"]) == pytest.approx(36 * voxel_ml, abs=1e-3)
    with pytest.raises(LkSegError):
        write_volumes(rows, tmp_path / "v.xlsx")


def test_overlay_png(tmp_path: Path) -> None:
    image = labelled()
    ct = image.with_array(np.where(image.array > 0, 40, -1000).astype(np.int16))
    path = overlay_png(ct, image, BTCV, tmp_path / "overlay.png", n_slices=3)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image as mpimg

    rgba = mpimg.imread(str(path))
    assert rgba.shape[0] > 100 and rgba.shape[1] > 300
    # the liver colour shows up (blended over grey)
    assert (np.abs(rgba[..., 0] - rgba[..., 2]) > 0.05).any()


def test_seg_nrrd_label_values_of_a_table_with_gaps(tmp_path: Path) -> None:
    """Segment label values are the table's values, not positions (BTCV's 1..13 cannot tell them apart)."""
    import nrrd

    table = LabelTable([Label(3, "right kidney", (10, 20, 30)), Label(7, "liver", (200, 100, 50))], name="gaps")
    arr = np.zeros((5, 6, 7), np.uint8)
    arr[1:3, 1:4, 1:5] = 7
    arr[3:5, 4:6, 0:2] = 3
    image = Image(arr, (1.0, 1.5, 2.0), (0.0, 0.0, 0.0), np.eye(3))
    data, header = nrrd.read(str(write_labels(image, table, tmp_path / "gaps.seg.nrrd")))
    by_name = {header[f"Segment{n}_Name"]: int(header[f"Segment{n}_LabelValue"]) for n in range(2)}
    assert by_name == {"right kidney": 3, "liver": 7}
    np.testing.assert_array_equal(data.transpose(2, 1, 0), arr)
