"""Hostile and damaged checkpoint files: validated before anything is allocated, integrity checked
by a stored digest, card fields treated as data (never paths), non-finite weights refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from lkseg.checkpoint.card import CheckpointError
from lkseg.checkpoint.native import (
    CARD_KEY,
    DIGEST_KEY,
    load_checkpoint,
    read_card,
    save_checkpoint,
)
from lkseg.cli import main
from lkseg.models.registry import build_model
from safetensors import safe_open
from safetensors.torch import save_file


def _small_uxnet(tmp_path: Path, threshold_card) -> Path:
    _, card = threshold_card()
    from dataclasses import replace

    card = replace(card, architecture="uxnet", hyperparameters={"depths": [1, 1, 1, 1], "feat_size": [4, 8, 8, 8],
                                                                  "hidden_size": 16})
    model = build_model("uxnet", 1, card.out_channels, **card.hyperparameters)
    return save_checkpoint(tmp_path / "small.safetensors", model.state_dict(), card)


def _rewrite(src: Path, dst: Path, tensors=None, card: dict | None = None, digest: str | None = "keep") -> Path:
    """Write ``dst`` as a hostile tool would: any tensors, any card, our digest kept or dropped."""
    with safe_open(str(src), framework="pt") as f:
        meta = dict(f.metadata())
        state = {k: f.get_tensor(k) for k in f.keys()}
    if tensors is not None:
        state = tensors(state)
    if card is not None:
        meta[CARD_KEY] = json.dumps(card)
    if digest is None:
        meta.pop(DIGEST_KEY, None)
    save_file(state, str(dst), metadata=meta)
    return dst


def test_flipped_bytes_in_the_weights_are_detected(tmp_path, threshold_card, capsys):
    good = _small_uxnet(tmp_path, threshold_card)
    data = bytearray(good.read_bytes())
    data[-40] ^= 0xFF  # a byte inside the last tensor's data
    bad = tmp_path / "flipped.safetensors"
    bad.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="do not match the digest"):
        load_checkpoint(bad)
    assert main(["info", "--check", str(bad)]) == 2
    assert "damaged" in capsys.readouterr().err
    assert main(["info", "--check", str(good)]) == 0
    assert "match the digest" in capsys.readouterr().out


def test_non_finite_weights_are_refused_on_save_and_on_load(tmp_path, threshold_card):
    good = _small_uxnet(tmp_path, threshold_card)
    card = read_card(good)
    nan_state = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
                 for k, v in load_checkpoint(good)[0].state_dict().items()}
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        save_checkpoint(tmp_path / "nan.safetensors", nan_state, card)
    hostile = _rewrite(good, tmp_path / "nan2.safetensors", tensors=lambda s: {k: v * float("nan") for k, v in s.items()},
                       digest=None)
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        load_checkpoint(hostile)


def test_a_card_cannot_make_lkseg_read_a_file(tmp_path, threshold_card):
    good = _small_uxnet(tmp_path, threshold_card)
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps([{"value": 1, "name": "liver"}, {"value": 2, "name": "spleen"}]))
    for labels in (str(secret), "/dev/zero", "../secret.json"):
        card = json.loads(read_card(good).to_json())
        card["labels"] = labels
        hostile = _rewrite(good, tmp_path / "hostile.safetensors", card=card)
        with pytest.raises(CheckpointError, match="unknown built-in label table"):
            read_card(hostile)


def test_a_card_asking_for_a_huge_network_is_refused_before_it_is_built(tmp_path, threshold_card):
    good = _small_uxnet(tmp_path, threshold_card)
    card = json.loads(read_card(good).to_json())
    card["hyperparameters"]["feat_size"] = [4096, 8192, 16384, 32768]  # 17 GB if it were built
    hostile = _rewrite(good, tmp_path / "huge.safetensors", card=card)
    with pytest.raises(CheckpointError, match="parameters|do not fit"):
        load_checkpoint(hostile)


@pytest.mark.parametrize("field,value,message", [
    ("roi_size", [100000, 100000, 100000], "larger than any network window"),
    ("sw_batch_size", 100000, "above"),
])
def test_inference_settings_out_of_bounds_are_refused(tmp_path, threshold_card, field, value, message):
    good = _small_uxnet(tmp_path, threshold_card)
    card = json.loads(read_card(good).to_json())
    card["inference"][field] = value
    with pytest.raises(CheckpointError, match=message):
        read_card(_rewrite(good, tmp_path / "bounds.safetensors", card=card))
