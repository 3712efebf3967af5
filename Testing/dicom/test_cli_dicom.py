"""``lkseg segment --format dicom-seg`` and ``lkseg dataset add SERIES SEG.dcm`` as real processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import highdicom as hd
import numpy as np
from dicom_series import SEGMENTS, dcmqi_seg, organ_blocks
from lkseg.checkpoint.native import DIGEST_KEY, read_card, read_metadata
from lkseg.dataset.local import LocalDataset
from lkseg.dicom import load_source_series
from lkseg.dicom.seg_read import read_dicom_seg
from lkseg.io.imageio import read_image
from repo_data import DATA


def lkseg(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lkseg", *args], check=False, capture_output=True, text=True, timeout=300)


def test_segment_writes_a_dicom_seg_equal_to_the_label_file(series_dirs: dict[str, Path], tmp_path: Path,
                                                            ct_threshold_checkpoint: Path) -> None:
    series = series_dirs["reversed"]
    common = ("segment", str(series), "-m", str(ct_threshold_checkpoint), "--device", "cpu")
    seg = lkseg(*common, "-o", str(tmp_path / "seg"), "--format", "dicom-seg", "--volumes")
    nii = lkseg(*common, "-o", str(tmp_path / "nii"))
    assert seg.returncode == 0 and nii.returncode == 0, seg.stderr + nii.stderr
    path = tmp_path / "seg" / "reversed_seg.dcm"
    assert sorted(p.name for p in (tmp_path / "seg").iterdir()) == ["reversed_seg.dcm", "reversed_seg_volumes.csv"]
    labels = read_image(tmp_path / "nii" / "reversed_seg.nii.gz")
    table = read_card(ct_threshold_checkpoint).labels
    back, _ = read_dicom_seg(path, load_source_series(series), read_image(series), table)
    assert back.same_grid(labels) and np.count_nonzero(labels.array) > 1000
    np.testing.assert_array_equal(back.array, labels.array)
    algorithm = hd.seg.segread(path).SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert read_metadata(ct_threshold_checkpoint)[DIGEST_KEY] in algorithm.AlgorithmParameters
    assert "threshold-test" in algorithm.AlgorithmParameters


def test_dicom_seg_of_a_non_dicom_input_says_why(tmp_path: Path, ct_threshold_checkpoint: Path) -> None:
    nifti = DATA / "totalsegmentator" / "example_seg.nii.gz"
    proc = lkseg("segment", str(nifti), "-m", str(ct_threshold_checkpoint), "-o", str(tmp_path / "o"),
                 "--format", "dicom-seg")
    assert proc.returncode == 2 and "is not a DICOM series folder" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    proc = lkseg("segment", str(DATA / "totalsegmentator" / "example_ct_dicom"), "-m", str(ct_threshold_checkpoint),
                 "-o", str(tmp_path / "o"), "--format", "dicom-seg")
    assert proc.returncode == 2 and "anonymiser" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert "checkpoint:" not in proc.stderr  # refused before the model was loaded
    proc = lkseg("segment", str(nifti), "-m", str(ct_threshold_checkpoint), "-o", str(tmp_path / "x.dcm"),
                 "--format", "nii.gz")
    assert proc.returncode == 2 and "a .dcm output is a DICOM SEG" in proc.stderr
    assert not (tmp_path / "o").exists() and not (tmp_path / "x.dcm").exists()


def test_dataset_add_takes_a_seg_drawn_elsewhere(series_dirs: dict[str, Path], tmp_path: Path) -> None:
    series = series_dirs["oblique"]
    labels = organ_blocks(read_image(series).array.shape)
    drawn = dcmqi_seg(series, labels, SEGMENTS, tmp_path)
    ds = tmp_path / "ds"
    proc = lkseg("dataset", "add", str(series), str(drawn), "--labels", "BTCV", "--dataset", str(ds))
    assert proc.returncode == 0, proc.stderr
    dataset = LocalDataset(ds)
    (case,) = dataset.cases()
    stored = read_image(dataset.label_path(case))
    assert stored.same_grid(read_image(series))
    np.testing.assert_array_equal(stored.array, labels)
    other = series_dirs["axial"]
    proc = lkseg("dataset", "add", str(other), str(drawn), "--labels", "BTCV", "--dataset", str(ds))
    assert proc.returncode == 2 and "refers to series" in proc.stderr and "Traceback" not in proc.stderr
    assert LocalDataset(ds).cases() == [case]
