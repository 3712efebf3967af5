"""Image I/O: real files in every supported format, a real DICOM series, corrupt inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from lkseg.errors import LkSegError
from lkseg.io.image import Image
from lkseg.io.imageio import ImageReadError, from_sitk, read_image, to_sitk, write_image


def oblique_image(dtype=np.int16) -> Image:
    rng = np.random.default_rng(3)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    arr = rng.integers(-1000, 1000, size=(5, 6, 7)).astype(dtype)
    return Image(arr, (0.7, 1.3, 2.9), (-12.5, 33.25, 101.0), q)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_round_trip_keeps_array_and_geometry(tmp_path: Path, suffix: str) -> None:
    img = oblique_image()
    path = write_image(img, tmp_path / f"vol{suffix}")
    back = read_image(path)
    np.testing.assert_array_equal(back.array, img.array)
    assert back.array.dtype == img.array.dtype
    # NIfTI stores geometry in float32 (qform/sform): allow that rounding, nothing more
    assert back.same_grid(img, atol=1e-4)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"vol{suffix}"]  # no temp file left


def test_sitk_conversion_is_lossless() -> None:
    img = oblique_image(np.float32)
    s = to_sitk(img)
    assert s.GetSize() == img.size_ijk
    back = from_sitk(s)
    np.testing.assert_array_equal(back.array, img.array)
    np.testing.assert_array_equal(back.ijk_to_lps(), img.ijk_to_lps())
    # the same point through SimpleITK's own index->physical mapping
    assert np.allclose(s.TransformContinuousIndexToPhysicalPoint((1.5, 2.0, 3.25)),
                       img.index_to_physical([1.5, 2.0, 3.25])[0])


def test_write_is_atomic_over_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "v.nrrd"
    write_image(oblique_image(), path)
    newer = oblique_image()
    newer = newer.with_array(newer.array + 1)
    write_image(newer, path)
    np.testing.assert_array_equal(read_image(path).array, newer.array)
    assert [p.name for p in tmp_path.iterdir()] == ["v.nrrd"]


def test_dicom_series_folder(example_data: Path) -> None:
    img = read_image(example_data / "example_ct_dicom")
    assert img.size_ijk == (512, 512, 20)
    assert np.allclose(img.spacing, (0.977, 0.977, 2.0), atol=2e-3)
    assert img.array.min() < -500  # Hounsfield units after rescale slope/intercept


def test_corrupt_file_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"this is not a NIfTI file at all" * 10)
    with pytest.raises(ImageReadError, match="broken.nii.gz"):
        read_image(bad)


def test_truncated_file(tmp_path: Path) -> None:
    path = write_image(oblique_image(), tmp_path / "t.mha", compress=False)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="t.mha"):
        read_image(path)


def test_missing_and_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="no such file"):
        read_image(tmp_path / "nope.nii.gz")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageReadError, match="DICOM"):
        read_image(tmp_path / "empty")


def test_2d_and_4d_are_refused(tmp_path: Path) -> None:
    two = sitk.GetImageFromArray(np.zeros((8, 9), np.int16))
    sitk.WriteImage(two, str(tmp_path / "slice.nrrd"))
    with pytest.raises(LkSegError, match="2D"):
        read_image(tmp_path / "slice.nrrd")
    four = sitk.JoinSeries([sitk.GetImageFromArray(np.zeros((4, 5, 6), np.int16))] * 3)
    sitk.WriteImage(four, str(tmp_path / "series.nii.gz"))
    with pytest.raises(LkSegError, match="4D"):
        read_image(tmp_path / "series.nii.gz")


def test_dicom_folder_with_two_series_reads_the_larger(tmp_path: Path, example_data: Path, caplog) -> None:
    """...and says which one it read, naming the other."""
    import logging

    import shutil

    folder = tmp_path / "mixed"
    folder.mkdir()
    for f in sorted((example_data / "example_ct_dicom").iterdir()):
        shutil.copy(f, folder / f.name)
    # a second, 3-slice series (its own SeriesInstanceUID) in the same folder
    small = sitk.GetImageFromArray(np.full((3, 8, 8), 7, np.int16))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for z in range(3):
        sl = small[:, :, z]
        for tag, value in (("0020|000e", "1.2.826.0.1.3680043.2.1125.99.1"), ("0008|0060", "CT"),
                           ("0020|0013", str(z + 1)), ("0020|0032", f"0\\0\\{z * 5}"),
                           ("0008|0018", f"1.2.826.0.1.3680043.2.1125.99.2.{z}")):
            sl.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"other_{z}.dcm"))
        writer.Execute(sl)
    assert len(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))) == 2
    with caplog.at_level(logging.WARNING):
        img = read_image(folder)
    assert img.size_ijk == (512, 512, 20)
    assert "holds 2 DICOM series" in caplog.text and "1.2.826.0.1.3680043.2.1125.99.1 (3 files)" in caplog.text
