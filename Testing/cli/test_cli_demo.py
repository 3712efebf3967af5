"""``lkseg demo`` end to end: the bundled default model on the bundled sample CT, as README's first
command runs it. Each organ must land where anatomy puts it (checked in physical LPS coordinates)
and overlap TotalSegmentator's labels of this CT at least as well as the model does today.

Those labels are model-made (TotalSegmentator), not manual ground truth, and the model was trained on
slices of this very CT: the Dice floors are a regression guard, not a measure of accuracy.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from lkseg.evaluation.metrics import dice
from lkseg.io.imageio import read_image
from repo_data import DATA, SAMPLE_CT

#: our label value -> (TotalSegmentator value, Dice floor); the model reached 0.61, 0.63, 0.40, 0.38, 0.51
ORGANS = {1: ("liver", 5, 0.55), 2: ("spleen", 1, 0.55), 3: ("right kidney", 2, 0.30), 4: ("left kidney", 3, 0.30),
          5: ("stomach", 6, 0.40)}


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "out"
    proc = subprocess.run([sys.executable, "-m", "lkseg", "demo", "-o", str(out), "--device", "cpu"],
                          cwd=out.parent, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "liver" in proc.stdout and "mL" in proc.stdout
    return out


def _centroid_lps(image, mask: np.ndarray) -> np.ndarray:
    k, j, i = np.nonzero(mask)
    return (image.ijk_to_lps() @ np.stack([i, j, k, np.ones_like(i)]))[:3].mean(axis=1)


def test_demo_writes_every_output_on_the_ct_grid(demo: Path) -> None:
    ct = read_image(SAMPLE_CT)
    labels = read_image(demo / "sample_ct_labels.nii.gz")
    assert labels.same_grid(ct, atol=1e-6)
    seg = read_image(demo / "sample_ct_labels.seg.nrrd")
    assert seg.same_grid(ct, atol=1e-6)
    np.testing.assert_array_equal(seg.array, labels.array)
    assert (demo / "sample_ct_labels_overlay.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = {r["name"]: float(r["volume_ml"]) for r in csv.DictReader((demo / "sample_ct_labels_volumes.csv").open())}
    voxel_ml = float(np.prod(ct.spacing)) / 1000
    for value, (name, _, _) in ORGANS.items():
        assert rows[name] == pytest.approx((labels.array == value).sum() * voxel_ml, rel=1e-3)


def test_organs_land_where_anatomy_puts_them(demo: Path) -> None:
    ct = read_image(SAMPLE_CT)
    labels = read_image(demo / "sample_ct_labels.nii.gz").array
    body = _centroid_lps(ct, ct.array > -500)  # LPS: +x is the patient's left, +y posterior
    c = {name: _centroid_lps(ct, labels == value) for value, (name, _, _) in ORGANS.items()}
    assert c["liver"][0] < body[0] - 30 and c["spleen"][0] > body[0] + 30  # liver right, spleen left
    assert c["right kidney"][0] < body[0] < c["left kidney"][0]
    for kidney in ("right kidney", "left kidney"):  # kidneys lie behind the liver and the stomach
        assert c[kidney][1] > c["liver"][1] + 20 and c[kidney][1] > c["stomach"][1] + 20
        assert c[kidney][1] > body[1]


def test_dice_against_the_model_made_labels_holds_its_floor(demo: Path) -> None:
    labels = read_image(demo / "sample_ct_labels.nii.gz").array
    reference = read_image(DATA / "totalsegmentator" / "example_seg.nii.gz").array
    scores = {name: dice(labels == value, reference == ts) for value, (name, ts, _) in ORGANS.items()}
    print({k: round(v, 3) for k, v in scores.items()})
    for value, (name, _, floor) in ORGANS.items():
        assert scores[name] >= floor, f"{name}: Dice {scores[name]:.3f} fell below {floor}"
    # a left-right mirror of the same labels puts liver and spleen on the wrong side and fails the floors
    mirrored = labels[:, :, ::-1]
    assert dice(mirrored == 1, reference == 5) < ORGANS[1][2]
