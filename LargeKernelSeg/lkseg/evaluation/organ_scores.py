"""Per-organ scores of a label map against a reference: overlap, surface distances in mm, volumes.

Overlap and surface metrics are MONAI's (``compute_dice``, ``compute_hausdorff_distance`` at the
95th percentile, ``compute_average_surface_distance`` symmetric, ``compute_surface_dice``), given
the voxel spacing so distances are millimetres. Each organ is scored on the bounding box of its
voxels in either map (plus a margin), which changes no value and keeps memory to the organ.

Absent organs are not scored as failures of the same kind:

- ``absent``: in neither map; skipped.
- ``false positive``: predicted but not in the reference; reported (its volume) and kept out of
  the Dice mean, since Dice is 0 whatever was predicted and says nothing about the organs present.
- ``missed``: in the reference, not predicted; Dice 0 and NSD 0, distances undefined; counted in
  the Dice mean (the organ is there and was not found).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

#: the normalised surface Dice tolerance used unless another is asked for (mm)
DEFAULT_TOLERANCE_MM = 2.0
BOTH, ABSENT, FALSE_POSITIVE, MISSED = "present", "absent", "false positive", "missed"


@dataclass
class OrganScore:
    value: int
    name: str
    status: str  #: present | absent | false positive | missed
    dice: float | None = None
    hd95_mm: float | None = None
    assd_mm: float | None = None
    nsd: float | None = None
    volume_ml: float = 0.0  #: predicted
    reference_ml: float = 0.0
    volume_diff_ml: float | None = None  #: predicted - reference
    volume_diff_pct: float | None = None  #: relative to the reference

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _box(mask: np.ndarray, margin: int = 2) -> tuple[slice, ...]:
    idx = np.nonzero(mask)
    return tuple(slice(max(int(i.min()) - margin, 0), int(i.max()) + margin + 1) for i in idx)


def _one_hot(mask: np.ndarray) -> torch.Tensor:
    m = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))
    return torch.stack([1.0 - m, m])[None]


def surface_scores(pred: np.ndarray, ref: np.ndarray, spacing_kji: tuple[float, float, float],
                   tolerance_mm: float = DEFAULT_TOLERANCE_MM) -> dict[str, float]:
    """Dice, HD95, ASSD and NSD of two non-empty boolean masks (array order k, j, i; spacing in that order)."""
    from monai.metrics import (compute_average_surface_distance, compute_dice, compute_hausdorff_distance,
                               compute_surface_dice)

    box = _box(pred | ref)
    p, r = _one_hot(pred[box]), _one_hot(ref[box])
    spacing = [float(s) for s in spacing_kji]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # MONAI's own deprecation inside get_mask_edges
        return {
            "dice": float(compute_dice(p, r, include_background=False)[0, 0]),
            "hd95_mm": float(compute_hausdorff_distance(p, r, percentile=95, spacing=spacing)[0, 0]),
            "assd_mm": float(compute_average_surface_distance(p, r, symmetric=True, spacing=spacing)[0, 0]),
            "nsd": float(compute_surface_dice(p, r, class_thresholds=[tolerance_mm], spacing=spacing)[0, 0]),
        }


def score_organ(pred: np.ndarray, ref: np.ndarray, value: int, name: str, spacing_ijk: tuple[float, float, float],
                tolerance_mm: float = DEFAULT_TOLERANCE_MM) -> OrganScore:
    """The :class:`OrganScore` of label ``value`` in two label maps on one grid (``spacing`` in ITK order i, j, k)."""
    p, r = np.asarray(pred) == value, np.asarray(ref) == value
    voxel_ml = float(np.prod(spacing_ijk)) / 1000.0
    n_p, n_r = int(p.sum()), int(r.sum())
    score = OrganScore(value, name, ABSENT, volume_ml=n_p * voxel_ml, reference_ml=n_r * voxel_ml)
    if n_r:
        score.volume_diff_ml = score.volume_ml - score.reference_ml
        score.volume_diff_pct = 100.0 * score.volume_diff_ml / score.reference_ml
    if n_p and n_r:
        score.status = BOTH
        for key, val in surface_scores(p, r, tuple(spacing_ijk[::-1]), tolerance_mm).items():
            setattr(score, key, None if math.isnan(val) or math.isinf(val) else val)
    elif n_r:
        score.status, score.dice, score.nsd = MISSED, 0.0, 0.0
    elif n_p:
        score.status = FALSE_POSITIVE
    return score


def score_case(pred: Any, ref: Any, labels: list[tuple[int, str]],
               tolerance_mm: float = DEFAULT_TOLERANCE_MM) -> list[OrganScore]:
    """Scores of every ``(value, name)`` for two :class:`lkseg.io.image.Image` label maps on the same grid."""
    if not pred.same_grid(ref, atol=1e-3):
        raise ValueError("the prediction and the reference are not on the same voxel grid")
    return [score_organ(pred.array, ref.array, v, name, pred.spacing, tolerance_mm) for v, name in labels]


def dice_mean(scores: list[OrganScore]) -> float | None:
    """Mean Dice over the organs in the reference (present or missed); false positives are kept out."""
    vals = [s.dice for s in scores if s.status in (BOTH, MISSED) and s.dice is not None]
    return float(np.mean(vals)) if vals else None
