"""Each metric of ``lkseg evaluate`` against a case small enough to compute by hand."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from lkseg.cli import main
from lkseg.evaluation.organ_scores import ABSENT, BOTH, FALSE_POSITIVE, MISSED, dice_mean, score_case, score_organ
from lkseg.io.image import Image
from lkseg.io.imageio import write_image

#: anisotropic, in ITK order (i, j, k): a voxel is 1 x 1.5 x 2.5 mm = 3.75 uL
SPACING = (1.0, 1.5, 2.5)
SHAPE = (8, 10, 12)  # k, j, i


def hand_case() -> tuple[np.ndarray, np.ndarray]:
    """Organ 1: the reference is voxel a, the prediction a and b, 3 voxels from a along k (7.5 mm).
    Organ 2: single voxels 2 apart along j (3 mm). Organ 3: predicted only. Organ 4: reference only."""
    pred, ref = np.zeros(SHAPE, np.uint8), np.zeros(SHAPE, np.uint8)
    ref[2, 3, 4] = pred[2, 3, 4] = 1
    pred[5, 3, 4] = 1
    ref[6, 2, 8], pred[6, 4, 8] = 2, 2
    pred[0, 0, 0] = 3
    ref[7, 9, 11] = 4
    return pred, ref


def test_two_voxels_against_one() -> None:
    """Distances pred->ref {0, 7.5}, ref->pred {0}: HD95 = max(95th percentile of {0, 7.5}, 0) = 0.95 * 7.5;
    ASSD = (0 + 7.5 + 0) / 3; NSD at 2 mm = (1 + 1) / (2 + 1); Dice = 2 * 1 / 3; volumes 2 vs 1 voxels."""
    pred, ref = hand_case()
    s = score_organ(pred, ref, 1, "a", SPACING, tolerance_mm=2.0)
    assert s.status == BOTH
    assert s.dice == pytest.approx(2 / 3)
    assert s.hd95_mm == pytest.approx(0.95 * 7.5)
    assert s.assd_mm == pytest.approx(7.5 / 3)
    assert s.nsd == pytest.approx(2 / 3)
    assert s.volume_ml == pytest.approx(2 * 3.75e-3) and s.reference_ml == pytest.approx(3.75e-3)
    assert s.volume_diff_ml == pytest.approx(3.75e-3) and s.volume_diff_pct == pytest.approx(100.0)
    assert score_organ(pred, ref, 1, "a", SPACING, tolerance_mm=8.0).nsd == pytest.approx(1.0)


def test_spacing_follows_the_axis() -> None:
    """Organ 2's voxels are 2 apart along j (1.5 mm): 3 mm, not 2 (i spacing) or 5 (k spacing)."""
    pred, ref = hand_case()
    s = score_organ(pred, ref, 2, "b", SPACING, tolerance_mm=2.9)
    assert s.dice == 0.0 and s.hd95_mm == pytest.approx(3.0) and s.assd_mm == pytest.approx(3.0)
    assert s.nsd == 0.0
    assert score_organ(pred, ref, 2, "b", SPACING, tolerance_mm=3.1).nsd == pytest.approx(1.0)


def test_absent_organs_and_the_dice_mean() -> None:
    pred, ref = hand_case()
    grid = Image(np.zeros(SHAPE, np.float32), SPACING, (3.0, -2.0, 1.0), np.diag([1.0, -1.0, 1.0]))
    scores = score_case(grid.with_array(pred), grid.with_array(ref), [(v, f"o{v}") for v in (1, 2, 3, 4, 5)])
    status = {s.value: s.status for s in scores}
    assert status == {1: BOTH, 2: BOTH, 3: FALSE_POSITIVE, 4: MISSED, 5: ABSENT}
    fp, missed = scores[2], scores[3]
    assert fp.dice is None and fp.volume_ml == pytest.approx(3.75e-3) and fp.volume_diff_pct is None
    assert missed.dice == 0.0 and missed.nsd == 0.0 and missed.hd95_mm is None and missed.volume_diff_pct == -100
    # the mean counts the organs in the reference (1, 2 and the missed 4), not the false positive 3
    assert dice_mean(scores) == pytest.approx((2 / 3 + 0.0 + 0.0) / 3)


def test_evaluate_writes_table_csv_json_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pred, ref = hand_case()
    grid = Image(np.zeros(SHAPE, np.float32), SPACING)
    p = write_image(grid.with_array(pred), tmp_path / "pred.nii.gz")
    r = write_image(grid.with_array(ref), tmp_path / "ref.nii.gz")
    out = {k: tmp_path / f"scores.{k}" for k in ("json", "csv", "png")}
    assert main(["evaluate", str(p), str(p), "--reference", str(r), str(r), "--tolerance", "2", "--json",
                 str(out["json"]), "--csv", str(out["csv"]), "--plot", str(out["png"])]) == 0
    text = capsys.readouterr().out
    assert "false positive in 2 (not in the Dice mean)" in text and "missed in 2 (Dice 0)" in text
    data = json.loads(out["json"].read_text())
    assert data["nsd_tolerance_mm"] == 2.0 and data["mean_dice"] == pytest.approx(2 / 9)
    assert data["organs"]["1"]["hd95_mm"]["mean"] == pytest.approx(0.95 * 7.5)
    rows = list(csv.DictReader(out["csv"].open()))
    assert len(rows) == 8 and {r["status"] for r in rows} == {BOTH, FALSE_POSITIVE, MISSED}
    assert float(next(r for r in rows if r["value"] == "1")["assd_mm"]) == pytest.approx(2.5)
    assert out["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the reports are not overwritten silently
    assert main(["evaluate", str(p), "--reference", str(r), "--csv", str(out["csv"])]) == 2
