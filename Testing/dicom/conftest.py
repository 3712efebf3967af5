"""The DICOM tests' fixtures: valid, oblique and reversed series made from the bundled one (see dicom_series.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from dicom_series import oblique_series, reversed_series, valid_series


@pytest.fixture(scope="session")
def series_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("series")
    return {"axial": valid_series(root / "axial"), "oblique": oblique_series(root / "oblique"),
            "reversed": reversed_series(root / "reversed")}


def organ_blocks(shape: tuple[int, int, int]) -> np.ndarray:
    """A label map in BTCV values: spleen (1) and right kidney (2) blocks, left kidney (3) one voxel in a
    corner, liver (6) touching the last slice; asymmetric in every axis so a flip or shift shows."""
    labels = np.zeros(shape, np.uint8)
    labels[2:10, 100:200, 120:210] = 1
    labels[5:15, 300:400, 250:300] = 2
    labels[0, 0, 0] = 3
    labels[12:, 40:90, 400:480] = 6
    return labels
