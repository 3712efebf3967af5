"""Shared, generic test fixtures: the shared example data and tiny threshold-network checkpoints."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The TotalSegmentator example folder (../shared/data or ./shared/data); skips when absent."""
    for root in (REPO.parent / "shared", REPO / "shared"):
        folder = root / "data" / "totalsegmentator-example"
        if folder.is_dir():
            return folder
    pytest.skip("shared/data/totalsegmentator-example is not available")


@pytest.fixture
def threshold_card() -> Callable[..., Any]:
    """Factory: ``threshold_card(thresholds=(0.5, 1.5), spacing=None, roi=(16,16,16), ...)``
    -> ``(model, card)`` for the "threshold-test" network (class c where
    thresholds[c-1] <= x < thresholds[c]), labels named organ1, organ2, ..."""
    from lkseg.checkpoint.card import InferenceSettings, ModelCard, Preprocessing
    from lkseg.checkpoint.labels import Code, Label, LabelTable
    from lkseg.models.registry import build_model

    def make(thresholds: Sequence[float] = (0.5, 1.5), spacing: Sequence[float] | None = None,
             roi: Sequence[int] = (16, 16, 16), overlap: float = 0.5, sw_batch_size: int = 4,
             intensity: dict | None = None, orientation: str = "RAS", blend: str = "gaussian",
             crop_foreground: bool = False) -> tuple[Any, Any]:
        n = len(thresholds)
        organ = Code("SCT", "123037004", "Anatomical Structure")
        table = LabelTable([Label(v, f"organ{v}", ((70 * v) % 256, 200 - 20 * v, 40 + 30 * v), organ,
                                  Code("SCT", str(10200000 + v), f"Organ {v}")) for v in range(1, n + 1)],
                           name="threshold-test")
        card = ModelCard(
            architecture="threshold-test", hyperparameters={"thresholds": [float(t) for t in thresholds]},
            in_channels=1, labels=table,
            preprocessing=Preprocessing(orientation=orientation, spacing=tuple(spacing) if spacing else None,
                                        intensity=intensity or {"mode": "none"}, crop_foreground=crop_foreground),
            inference=InferenceSettings(roi_size=tuple(roi), overlap=overlap, blend=blend,
                                        sw_batch_size=sw_batch_size))
        model = build_model("threshold-test", 1, n + 1, thresholds=list(thresholds))
        return model, card

    return make


@pytest.fixture
def threshold_checkpoint(tmp_path: Path, threshold_card: Callable[..., Any]) -> Path:
    """A saved "threshold-test" checkpoint: organ1 where 0.5 <= x < 1.5, organ2 where x >= 1.5."""
    from lkseg.checkpoint.native import save_checkpoint

    model, card = threshold_card()
    path = tmp_path / "threshold.safetensors"
    save_checkpoint(path, model.state_dict(), card)
    return path
