"""The card's modality and the warning when an image does not fit it: a real CT and a real MR
(TotalSegmentator example data, Testing/Data), through the function, the card and the real CLI."""

from __future__ import annotations

import subprocess
import sys

import pytest
from lkseg.checkpoint.card import CheckpointError, ModelCard
from lkseg.checkpoint.native import read_card
from lkseg.inference.modality import modality_warning
from lkseg.io.imageio import read_image
from repo_data import DATA, DEFAULT_MODEL, SAMPLE_CT

MR = DATA / "totalsegmentator" / "example_mr_sm.nii.gz"


def test_a_ct_fits_a_ct_model_and_an_mr_does_not() -> None:
    ct, mr = read_image(SAMPLE_CT).array, read_image(MR).array
    assert modality_warning(ct, "CT") is None
    assert modality_warning(mr, "MR T2-weighted") is None
    assert "does not look like a CT" in modality_warning(mr, "CT")
    assert "like the air of a CT" in modality_warning(ct, "MR T2-weighted")
    assert modality_warning(mr, "") is None  # a card that does not say: nothing to compare


def test_the_card_keeps_its_modality() -> None:
    card = read_card(DEFAULT_MODEL)
    assert card.modality == "CT" and "Modality:       CT" in card.summary()
    d = card.to_dict()
    assert ModelCard.from_dict({**d, "modality": "MR T2-weighted"}).modality == "MR T2-weighted"
    assert ModelCard.from_dict({k: v for k, v in d.items() if k != "modality"}).modality == ""
    with pytest.raises(CheckpointError, match="modality must start with one of CT, MR"):
        ModelCard.from_dict({**d, "modality": "PET"})


def test_segmenting_an_mr_with_the_ct_model_warns(tmp_path) -> None:
    proc = subprocess.run([sys.executable, "-m", "lkseg", "segment", str(MR), "-m", str(DEFAULT_MODEL), "-o",
                           str(tmp_path), "--device", "cpu"], check=False, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "lkseg: warning:" in proc.stderr and "does not look like a CT" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "lkseg", "segment", str(SAMPLE_CT), "-m", str(DEFAULT_MODEL), "-o",
                           str(tmp_path / "ct"), "--device", "cpu"], check=False, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and "warning" not in proc.stderr, proc.stderr
