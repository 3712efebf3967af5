"""Intensity normalisation as a model card says (window, z-score, none) and the foreground box."""

from __future__ import annotations

import logging
from typing import Any

import torch

from lkseg.errors import LkSegError

log = logging.getLogger(__name__)


def normalise_intensity(x: torch.Tensor, intensity: dict[str, Any]) -> torch.Tensor:
    """Apply the card's intensity settings: window (a/b min/max, clip), z-score or none."""
    mode = (intensity or {}).get("mode", "none")
    if mode == "window":
        a_min, a_max = float(intensity["a_min"]), float(intensity["a_max"])
        b_min, b_max = float(intensity.get("b_min", 0.0)), float(intensity.get("b_max", 1.0))
        if a_max == a_min:
            raise LkSegError("the model card's intensity window has a_min == a_max")
        x = (x - a_min) / (a_max - a_min) * (b_max - b_min) + b_min
        if intensity.get("clip", True):
            x = x.clamp(min(b_min, b_max), max(b_min, b_max))
        return x
    if mode == "zscore":
        std = x.std()
        return (x - x.mean()) / (std if float(std) > 0 else 1.0)
    if mode == "none":
        return x
    raise LkSegError(f"the model card's intensity mode {mode!r} is not one of window, zscore, none")


def foreground_box(x: torch.Tensor, threshold: float, margin: int = 2) -> tuple[slice, slice, slice] | None:
    """Bounding box (k, j, i slices) of voxels above ``threshold`` plus ``margin``, or None if empty."""
    mask = x[0, 0] > threshold
    if not bool(mask.any()):
        return None
    box = []
    for dim in range(3):
        other = tuple(d for d in range(3) if d != dim)
        hit = torch.nonzero(mask.to(torch.int32).sum(dim=other)).flatten()
        lo = max(0, int(hit.min()) - margin)
        hi = min(mask.shape[dim], int(hit.max()) + margin + 1)
        box.append(slice(lo, hi))
    return tuple(box)
