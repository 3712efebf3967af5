"""Shared test fixtures: the real example data the repository carries and tiny test-network checkpoints."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

#: skips that may happen anywhere; with LKSEG_STRICT_SKIPS=1 (CI) any other skip fails the run
ALLOWED_SKIP_REASONS = ("needs CUDA",)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI, a skipped test means something the suite needs is missing: fail instead of passing."""
    import os

    if os.environ.get("LKSEG_STRICT_SKIPS") != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    bad = [r for r in skipped if not any(reason in str(r.longrepr) for reason in ALLOWED_SKIP_REASONS)]
    if bad:
        for r in bad:
            reporter.write_line(f"not allowed in CI: skipped {r.nodeid}: {r.longrepr}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED

from repo_data import DATA, SAMPLE_CT


@pytest.fixture(scope="session")
def example_data() -> Path:
    """The TotalSegmentator example files carried by the repository (sample CT, its model-made
    labels, the DICOM series) in one folder of their own names."""
    return DATA / "totalsegmentator"


@pytest.fixture(scope="session")
def sample_ct() -> Path:
    """The bundled sample CT (= TotalSegmentator's example_ct_sm.nii.gz)."""
    return SAMPLE_CT


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
def edge_card() -> Callable[..., Any]:
    """Factory: ``edge_card(spacing=None, roi=(16,16,16), ...)`` -> ``(model, card)`` for the direction-
    sensitive "edge-test" network: class 1/2/3 = faces of bright objects toward the patient's right /
    anterior / superior (the network tensor's X / Y / Z after "RAS" orientation)."""
    from lkseg.checkpoint.card import InferenceSettings, ModelCard, Preprocessing
    from lkseg.checkpoint.labels import Label, LabelTable
    from lkseg.models.registry import build_model

    def make(spacing: Sequence[float] | None = None, roi: Sequence[int] = (16, 16, 16), overlap: float = 0.5,
             blend: str = "gaussian", orientation: str = "RAS") -> tuple[Any, Any]:
        table = LabelTable([Label(1, "right face", (200, 40, 40)), Label(2, "anterior face", (40, 200, 40)),
                            Label(3, "superior face", (40, 40, 200))], name="edge-test")
        card = ModelCard(architecture="edge-test", hyperparameters={"threshold": 0.5}, in_channels=1, labels=table,
                         preprocessing=Preprocessing(orientation=orientation,
                                                     spacing=tuple(spacing) if spacing else None,
                                                     intensity={"mode": "none"}),
                         inference=InferenceSettings(roi_size=tuple(roi), overlap=overlap, blend=blend, sw_batch_size=4))
        return build_model("edge-test", 1, 4, threshold=0.5), card

    return make


@pytest.fixture
def threshold_checkpoint(tmp_path: Path, threshold_card: Callable[..., Any]) -> Path:
    """A saved "threshold-test" checkpoint: organ1 where 0.5 <= x < 1.5, organ2 where x >= 1.5."""
    from lkseg.checkpoint.native import save_checkpoint

    model, card = threshold_card()
    path = tmp_path / "threshold.safetensors"
    save_checkpoint(path, model.state_dict(), card)
    return path
