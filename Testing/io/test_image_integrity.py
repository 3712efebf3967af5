"""Integrity of what is read: a truncated or damaged file, NaN/Inf voxels, a DICOM series with a missing
slice (two series in one folder: test_imageio.py). Each is refused or said out loud, never silently wrong."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
from lkseg.cli import main
from lkseg.errors import LkSegError
from lkseg.inference.segmenter import Segmenter
from lkseg.io.image import Image
from lkseg.io.imageio import read_image, write_image
from lkseg.io.integrity import IncompleteFileError
from repo_data import SAMPLE_CT


def test_a_truncated_gzip_nifti_is_refused_everywhere(tmp_path, threshold_checkpoint, capsys):
    cut = tmp_path / "t.nii.gz"
    cut.write_bytes(SAMPLE_CT.read_bytes()[:241656])  # half of the bundled CT (the reported reproduction)
    with pytest.raises(IncompleteFileError, match="ends early"):
        read_image(cut)
    assert main(["segment", str(cut), "-m", str(threshold_checkpoint), "-o", str(tmp_path / "out"),
                 "--device", "cpu"]) == 1
    assert "ends early" in capsys.readouterr().err and not (tmp_path / "out" / "t_seg.nii.gz").exists()
    labels = write_image(read_image(SAMPLE_CT).with_array(np.zeros((30, 101, 122), np.uint8)), tmp_path / "l.nii.gz")
    assert main(["dataset", "add", str(cut), str(labels), "--dataset", str(tmp_path / "ds"),
                 "--labels", "FLARE21"]) == 2
    assert "ends early" in capsys.readouterr().err


def test_a_corrupted_gzip_and_a_short_plain_nifti_are_refused(tmp_path):
    data = bytearray(SAMPLE_CT.read_bytes())
    data[len(data) // 2] ^= 0x55
    (tmp_path / "flipped.nii.gz").write_bytes(bytes(data))
    with pytest.raises(IncompleteFileError):
        read_image(tmp_path / "flipped.nii.gz")
    plain = write_image(read_image(SAMPLE_CT), tmp_path / "ct.nii", compress=False)
    (tmp_path / "short.nii").write_bytes(plain.read_bytes()[:-1000])
    with pytest.raises(IncompleteFileError, match="truncated"):
        read_image(tmp_path / "short.nii")
    assert read_image(plain).array.shape == (30, 101, 122)  # the complete file still reads


def test_nan_and_inf_voxels_are_replaced_and_said(threshold_card, caplog):
    arr = np.zeros((16, 16, 16), np.float32)
    arr[4:12, 4:12, 4:12] = 1.0
    rng = np.random.default_rng(0)
    holes = rng.random(arr.shape) < 0.0065  # 0.65 % as in the report
    arr[holes] = np.where(rng.random(int(holes.sum())) < 0.5, np.nan, np.inf)
    image = Image(arr, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), np.eye(3))
    model, card = threshold_card(roi=(16, 16, 16))
    with caplog.at_level(logging.WARNING):
        result = Segmenter(model, card, device="cpu").segment(image)
    assert any("NaN or infinite" in n for n in result.notes) and "NaN or infinite" in caplog.text
    truth = np.where(np.isfinite(arr), arr, 0).astype(np.uint8)
    np.testing.assert_array_equal(result.labels.array[~holes], truth[~holes])  # the organ is still there
    assert (result.labels.array == 1).sum() > 400
    with pytest.raises(LkSegError, match="every voxel"):
        Segmenter(model, card, device="cpu").segment(image.with_array(np.full_like(arr, np.nan)))


def test_a_dicom_series_with_a_missing_slice_is_refused(tmp_path, example_data):
    folder = tmp_path / "gap"
    folder.mkdir()
    files = sorted((example_data / "example_ct_dicom").iterdir())
    for f in files[:9] + files[10:]:  # one slice in the middle lost in transfer
        shutil.copy(f, folder / f.name)
    with pytest.raises(LkSegError, match="slice\\(s\\) are missing"):
        read_image(folder)
    shutil.copy(files[9], folder / files[9].name)
    assert read_image(folder).array.shape == (20, 512, 512)


def test_nan_voxels_in_a_nifti_file_are_not_read_as_zero(tmp_path, threshold_card):
    """SimpleITK's NIfTI reader turns NaN/Inf into 0 (water) silently; lkseg reads them from the file."""
    import nibabel as nib

    arr = np.zeros((16, 16, 16), np.float32)
    arr[4:12, 4:12, 4:12] = 1.0
    arr[5, 6, 7], arr[0, 0, 0] = np.nan, np.inf  # nibabel order: (i, j, k)
    nib.save(nib.Nifti1Image(arr, np.eye(4)), str(tmp_path / "holes.nii.gz"))
    image = read_image(tmp_path / "holes.nii.gz")
    assert np.isnan(image.array[7, 6, 5]) and np.isnan(image.array[0, 0, 0]) and np.isfinite(image.array).sum() == arr.size - 2
    model, card = threshold_card(roi=(16, 16, 16))
    assert any("NaN or infinite" in n for n in Segmenter(model, card, device="cpu").segment(image).notes)
