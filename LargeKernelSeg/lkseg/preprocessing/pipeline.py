"""Preprocessing as a model card says: orient, resample and normalise an image onto the network grid,
recording what is needed to map predictions back (see :mod:`lkseg.preprocessing.spatial`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from lkseg.io.image import Image
from lkseg.preprocessing.body import body_mask
from lkseg.preprocessing.intensity import foreground_box, normalise_intensity
from lkseg.preprocessing.spatial import Grid, crop_grid, network_grid, resample

log = logging.getLogger(__name__)


@dataclass
class Preprocessed:
    """The network input and what is needed to map predictions back."""

    tensor: torch.Tensor  # (1, 1, X, Y, Z) float32 (MONAI layout, X along R for "RAS"), on the device
    grid: Grid  # the network grid (after any crop)
    source: Grid  # the input grid
    body: torch.Tensor | None = None  # (X, Y, Z) bool: the body in ``tensor`` (with find_body), else None


def preprocess(image: Image, preprocessing: Any, device: torch.device | str = "cpu",
               find_body: bool = False, modality: str = "") -> Preprocessed:
    """Orient, resample and normalise ``image`` as the card's ``Preprocessing`` says; with ``find_body``
    also the body on the network grid (:mod:`lkseg.preprocessing.body`, by ``modality``)."""
    device = torch.device(device)
    source = Grid.of(image)
    spacing = getattr(preprocessing, "spacing", None)
    grid = network_grid(source, getattr(preprocessing, "orientation", "RAS"),
                        tuple(spacing) if spacing is not None else None)
    vol = torch.from_numpy(np.ascontiguousarray(image.array, dtype=np.float32))[None, None].to(device)
    x = resample(vol, source, grid, mode="bilinear", padding="border")
    del vol
    body = body_mask(x, modality, axial_axis(grid)) if find_body else None
    intensity = getattr(preprocessing, "intensity", {"mode": "none"})
    x = normalise_intensity(x, intensity)
    if getattr(preprocessing, "crop_foreground", False):
        threshold = float(intensity.get("b_min", 0.0)) if intensity.get("mode") == "window" else float(x.min())
        box = foreground_box(x, threshold)
        if box is not None:
            x = x[:, :, box[0], box[1], box[2]].contiguous()
            grid = crop_grid(grid, box)
            if body is not None:
                body = body[box[0], box[1], box[2]]
    log.debug("network grid %s spacing %s (input %s spacing %s)", grid.shape, grid.spacing, source.shape, source.spacing)
    return Preprocessed(x, grid, source, body)


def axial_axis(grid: Grid) -> int:
    """The array axis of ``grid`` that runs closest to the body's long axis (superior-inferior)."""
    columns = grid.matrix[:3, :3] / np.linalg.norm(grid.matrix[:3, :3], axis=0)
    return 2 - int(np.argmax(np.abs(columns[2])))  # array axis a is the matrix's column 2 - a
