"""``lkseg segment`` and ``lkseg evaluate`` run as real processes on real files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from lkseg.cli import main
from lkseg.io.image import Image
from lkseg.io.imageio import read_image, write_image


def lkseg(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lkseg", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def volume(seed: int, shape=(14, 17, 19)) -> Image:
    rng = np.random.default_rng(seed)
    arr = rng.choice([0.0, 1.0, 2.0], size=shape, p=[0.6, 0.3, 0.1]).astype(np.float32)
    arr[:4] = 1.0  # a solid slab of organ1, so every volume has some
    return Image(arr, (1.0, 1.2, 2.0), (5.0, 6.0, -7.0), np.diag([1.0, -1.0, 1.0]))


def test_folder_with_one_corrupt_file(tmp_path: Path, threshold_checkpoint: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    good = {"a": volume(1), "b": volume(2, shape=(11, 13, 9))}
    write_image(good["a"], src / "a.nii.gz")
    write_image(good["b"], src / "b.nrrd")
    (src / "c.nii.gz").write_bytes(b"\x1f\x8b not really gzip")
    (src / "notes.txt").write_text("ignored: not an image file")
    out = tmp_path / "out"
    proc = lkseg("segment", str(src), "-m", str(threshold_checkpoint), "-o", str(out), "--device", "cpu",
                 "--volumes", "--format", "seg.nrrd")
    assert proc.returncode == 1, proc.stderr
    assert "c.nii.gz" in proc.stderr and "skipped" in proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["a_seg.seg.nrrd", "a_seg_volumes.csv",
                                                    "b_seg.seg.nrrd", "b_seg_volumes.csv"]
    for name, image in good.items():
        labels = read_image(out / f"{name}_seg.seg.nrrd")
        assert labels.same_grid(image)
        np.testing.assert_array_equal(labels.array, image.array.astype(np.uint8))
    assert "organ1" in proc.stdout and "mL" in proc.stdout


def test_single_file_to_file_with_overlay_then_evaluate(tmp_path: Path, threshold_checkpoint: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    image = volume(3)
    src = write_image(image, tmp_path / "ct.mha")
    dst = tmp_path / "result" / "labels.nii.gz"
    proc = lkseg("segment", str(src), "-m", str(threshold_checkpoint), "-o", str(dst), "--device", "cpu",
                 "--overlay", "--tta", "--largest-component")
    assert proc.returncode == 0, proc.stderr
    assert dst.is_file() and (tmp_path / "result" / "labels_overlay.png").is_file()

    # the segmentation: only true voxels of each organ survive the largest-component clean-up, the slab stays
    truth = image.array.astype(np.uint8)
    pred = read_image(dst).array
    for v in (1, 2):
        assert ((pred == v) <= (truth == v)).all()
    assert (pred[:4] == 1).all()

    # evaluate on hand-made files: organ1 has 4*5*6 = 120 voxels in the prediction, 4*5*9 = 180 in the
    # reference, 4*5*6 = 120 shared -> Dice 2*120/300 = 0.8; organ2 is predicted where the reference has none
    hand_pred, hand_ref = np.zeros((10, 12, 14), np.uint8), np.zeros((10, 12, 14), np.uint8)
    hand_pred[1:5, 2:7, 3:9] = 1
    hand_ref[1:5, 2:7, 3:12] = 1
    hand_pred[7:9, 8:10, 8:10] = 2
    grid = Image(np.zeros((10, 12, 14), np.float32), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), np.eye(3))
    pred_file = write_image(grid.with_array(hand_pred), tmp_path / "hand_pred.nii.gz")
    ref = write_image(grid.with_array(hand_ref), tmp_path / "hand_ref.nii.gz")
    report = tmp_path / "dice.json"
    assert main(["evaluate", str(pred_file), "--reference", str(ref), "--labels", str(threshold_checkpoint),
                 "--json", str(report)]) == 0
    assert "organ1" in capsys.readouterr().out
    data = json.loads(report.read_text())
    assert data["organs"]["1"]["dice"]["mean"] == pytest.approx(0.8)
    # organ2 is not in the reference: a false positive, kept out of the Dice mean
    assert data["organs"]["2"]["false_positive"] == 1 and data["organs"]["2"]["dice"]["mean"] is None
    assert data["mean_dice"] == pytest.approx(0.8)

    # reference: the truth with organ2 wiped out
    ref_arr = truth.copy()
    ref_arr[ref_arr == 2] = 0
    ref = write_image(image.with_array(ref_arr), tmp_path / "ref.nii.gz")

    # the same through -m: segment the image, then compare
    # (no largest-component clean-up here, so organ1 matches the reference exactly)
    assert main(["evaluate", str(src), "-m", str(threshold_checkpoint), "--device", "cpu", "--reference", str(ref),
                 "--json", str(report)]) == 2  # the first report is not overwritten silently
    assert main(["evaluate", str(src), "-m", str(threshold_checkpoint), "--device", "cpu", "--reference", str(ref),
                 "--json", str(report), "--overwrite"]) == 0
    data = json.loads(report.read_text())
    assert data["organs"]["1"]["dice"]["mean"] == 1.0 and data["organs"]["1"]["hd95_mm"]["mean"] == 0.0
    assert data["organs"]["2"]["false_positive"] == 1 and data["mean_dice"] == 1.0


def test_bad_checkpoint_and_mismatched_counts(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src = write_image(volume(4), tmp_path / "ct.nii.gz")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"nope")
    assert main(["segment", str(src), "-m", str(bad), "-o", str(tmp_path / "o"), "--device", "cpu"]) == 2
    assert "bad.safetensors" in capsys.readouterr().err
    assert main(["evaluate", str(src), str(src), "--reference", str(src)]) == 2
    assert "reference" in capsys.readouterr().err
