"""Inference precision: what ``auto`` picks, the card's float32 floor, bfloat16 labels that agree with
float32 ones on a trained network, and scripts/check_precision.py deciding a card's precision from that
agreement (real checkpoints, real images, the script as a real process)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lkseg.checkpoint.native import read_card
from lkseg.cli.inference_options import PRECISION_CHOICES
from lkseg.errors import LkSegError
from lkseg.evaluation.metrics import dice_per_label
from lkseg.inference.segmenter import Segmenter
from lkseg.io.imageio import read_image
from lkseg.utils.devices import PRECISIONS, inference_dtype
from repo_data import DEFAULT_MODEL, REPO, SAMPLE_CT

MR_MODEL = REPO / "Resources" / "Models" / "mr_t2_model.safetensors"
SAMPLE_MR = REPO / "Resources" / "Data" / "sample_mr_t2.nii.gz"
CPU = torch.device("cpu")


def test_precision_choices() -> None:
    assert PRECISION_CHOICES == PRECISIONS
    assert inference_dtype(CPU, "fp32") is None
    assert inference_dtype(CPU, "bf16") is torch.bfloat16
    with pytest.raises(LkSegError, match="float16 inference needs a GPU"):
        inference_dtype(CPU, "fp16")
    with pytest.raises(LkSegError, match="unknown precision"):
        inference_dtype(CPU, "int8")


def test_a_card_that_asks_for_float32_gets_it_under_auto() -> None:
    assert read_card(DEFAULT_MODEL).inference.precision == "fp32"  # measured: thin margins, see the card
    image = read_image(SAMPLE_CT)
    auto = Segmenter.from_checkpoint(DEFAULT_MODEL, "cpu").segment(image)
    fp32 = Segmenter.from_checkpoint(DEFAULT_MODEL, "cpu", precision="fp32").segment(image)
    assert auto.precision == "fp32"
    assert np.array_equal(auto.labels.array, fp32.labels.array)
    forced = Segmenter.from_checkpoint(DEFAULT_MODEL, "cpu", precision="bf16").segment(image)
    assert forced.precision == "bf16"  # an explicit request overrides the card


def test_bfloat16_labels_agree_with_float32_on_the_trained_mr_model() -> None:
    image = read_image(SAMPLE_MR)
    fp32 = Segmenter.from_checkpoint(MR_MODEL, "cpu", precision="fp32").segment(image).labels.array
    bf16 = Segmenter.from_checkpoint(MR_MODEL, "cpu", precision="bf16").segment(image).labels.array
    assert not np.array_equal(fp32, bf16)  # the bfloat16 path really ran ...
    dice = [d for d in dice_per_label(fp32, bf16, range(1, 5)).values() if not np.isnan(d)]
    assert len(dice) == 4 and min(dice) >= 0.999  # ... and its labels are those of float32


def _run_check(checkpoint: Path, image: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "scripts" / "check_precision.py"), str(checkpoint), str(image),
                           "--write"], capture_output=True, text=True, timeout=300)


def test_check_precision_sets_the_card_from_the_measured_agreement(tmp_path: Path) -> None:
    ct = tmp_path / "ct.safetensors"
    shutil.copyfile(DEFAULT_MODEL, ct)
    mr = tmp_path / "mr.safetensors"
    shutil.copyfile(MR_MODEL, mr)
    proc = _run_check(ct, SAMPLE_CT)
    assert proc.returncode == 0, proc.stderr
    card = read_card(ct)
    agreement = card.provenance.metrics["bf16_agreement_dice"]["sample_ct.nii.gz"]
    assert agreement < 0.999 and card.inference.precision == "fp32"
    proc = _run_check(mr, SAMPLE_MR)
    assert proc.returncode == 0, proc.stderr
    card = read_card(mr)
    assert card.provenance.metrics["bf16_agreement_dice"]["sample_mr_t2.nii.gz"] >= 0.999
    assert card.inference.precision == "auto"
    # the tensors are untouched: the checkpoint still loads and verifies against its digest
    Segmenter.from_checkpoint(mr, "cpu")


def test_segment_refuses_float16_on_the_cpu_in_one_line(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "lkseg", "segment", str(SAMPLE_CT), "-m", str(DEFAULT_MODEL),
                           "-o", str(tmp_path / "out"), "--device", "cpu", "--precision", "fp16"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "float16 inference needs a GPU" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
