"""The DICOM tests' fixtures: valid, oblique and reversed series made from the bundled one (see dicom_series.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from dicom_series import oblique_series, reversed_series, valid_series


@pytest.fixture(scope="session")
def series_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("series")
    return {"axial": valid_series(root / "axial"), "oblique": oblique_series(root / "oblique"),
            "reversed": reversed_series(root / "reversed")}


@pytest.fixture(scope="session")
def ct_threshold_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A "threshold-test" checkpoint for CT: organ1 from 100 to 400 HU, organ2 above (codes as in the
    threshold_card fixture of Testing/conftest.py)."""
    from lkseg.checkpoint.card import InferenceSettings, ModelCard, Preprocessing
    from lkseg.checkpoint.labels import ANATOMICAL_STRUCTURE, Code, Label, LabelTable
    from lkseg.checkpoint.native import save_checkpoint
    from lkseg.models.registry import build_model

    table = LabelTable([Label(v, f"organ{v}", (60 * v, 200 - 40 * v, 90), ANATOMICAL_STRUCTURE,
                              Code("SCT", str(10200000 + v), f"Organ {v}")) for v in (1, 2)], name="threshold-test")
    card = ModelCard(architecture="threshold-test", hyperparameters={"thresholds": [100.0, 400.0]}, in_channels=1,
                     labels=table, preprocessing=Preprocessing(orientation="RAS", spacing=None,
                                                               intensity={"mode": "none"}),
                     inference=InferenceSettings(roi_size=(64, 64, 16), overlap=0.25, sw_batch_size=8))
    path = tmp_path_factory.mktemp("ckpt") / "ct_threshold.safetensors"
    save_checkpoint(path, build_model("threshold-test", 1, 3, thresholds=[100.0, 400.0]).state_dict(), card)
    return path
