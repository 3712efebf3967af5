"""Small synthetic training cases and a trainable threshold-network parent checkpoint, shared by the
training, job and CLI tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from lkseg.checkpoint.card import (
    InferenceSettings,
    ModelCard,
    Preprocessing,
    Provenance,
)
from lkseg.checkpoint.labels import ANATOMICAL_STRUCTURE, Label, LabelTable
from lkseg.checkpoint.native import save_checkpoint
from lkseg.dataset.local import LocalDataset
from lkseg.io.image import Image
from lkseg.models.registry import build_model

TABLE = LabelTable([Label(1, "liver", (220, 130, 100), ANATOMICAL_STRUCTURE, None),
                    Label(2, "spleen", (157, 108, 162), ANATOMICAL_STRUCTURE, None)], name="two organs")
WINDOW = {"mode": "window", "a_min": 0.0, "a_max": 300.0, "b_min": 0.0, "b_max": 1.0, "clip": True}


def make_dataset(root: Path, n: int = 3, shape=(20, 24, 28)) -> LocalDataset:
    """Cases with two blobs: liver (~150 HU) and spleen (~250 HU) on a ~30 HU background."""
    ds = LocalDataset.create(root, TABLE, name="synthetic")
    rng = np.random.default_rng(0)
    zz, yy, xx = np.mgrid[: shape[0], : shape[1], : shape[2]]
    for c in range(n):
        arr = rng.normal(30, 10, shape)
        lab = np.zeros(shape, np.uint8)
        for value, (cz, cy, cx, hu) in enumerate([(8 + c, 10, 9, 150), (12, 14 - c, 19, 250)], start=1):
            m = (zz - cz) ** 2 + (yy - cy) ** 2 + (xx - cx) ** 2 < 20
            lab[m], arr[m] = value, hu + rng.normal(0, 10, m.sum())
        img = Image(arr.astype(np.int16), (1.5, 1.5, 2.0), (5.0, -3.0, 1.0), np.diag([-1.0, -1.0, 1.0]))
        ds.add_case(img, img.with_array(lab), TABLE)
    return ds


def threshold_checkpoint(path: Path, scale: float = 1.0) -> Path:
    """A 'threshold-test' checkpoint: a voxel-wise network with a trainable scale per class."""
    model = build_model("threshold-test", 1, 3, thresholds=[0.4, 0.7])
    with torch.no_grad():
        model.scale.fill_(scale)
    card = ModelCard("threshold-test", {"thresholds": [0.4, 0.7]}, 1, TABLE,
                     preprocessing=Preprocessing(spacing=None, intensity=dict(WINDOW)),
                     inference=InferenceSettings(roi_size=(16, 16, 16), sw_batch_size=2),
                     provenance=Provenance(notes="test parent"))
    return save_checkpoint(path, model.state_dict(), card)


