"""Overlap metrics between label maps."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """Dice coefficient of two boolean masks; NaN when both are empty."""
    pred = np.asarray(pred, dtype=bool)
    ref = np.asarray(ref, dtype=bool)
    if pred.shape != ref.shape:
        raise ValueError(f"masks differ in shape: {pred.shape} vs {ref.shape}")
    total = int(pred.sum()) + int(ref.sum())
    if total == 0:
        return float("nan")
    return 2.0 * int(np.logical_and(pred, ref).sum()) / total


def dice_per_label(pred: np.ndarray, ref: np.ndarray, labels: Iterable[int]) -> dict[int, float]:
    """Dice per label value (NaN where the label is absent from both maps)."""
    pred = np.asarray(pred)
    ref = np.asarray(ref)
    if pred.shape != ref.shape:
        raise ValueError(f"label maps differ in shape: {pred.shape} vs {ref.shape}")
    return {int(v): dice(pred == v, ref == v) for v in labels}


def mean_dice(scores: dict[int, float]) -> float:
    """Mean over the labels present in at least one map (NaN when none is)."""
    vals = [v for v in scores.values() if not np.isnan(v)]
    return float(np.mean(vals)) if vals else float("nan")
