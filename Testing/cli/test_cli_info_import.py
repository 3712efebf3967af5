"""``lkseg info`` and ``lkseg import`` on real files, in-process and as a subprocess."""

import json
import os
import subprocess
import sys

import torch
from lkseg.checkpoint.card import ModelCard
from lkseg.checkpoint.labels import FLARE21
from lkseg.checkpoint.native import (
    file_sha256,
    load_checkpoint,
    read_card,
    save_checkpoint,
)
from lkseg.cli import main

CARD = {"architecture": "threshold-test", "hyperparameters": {"thresholds": [0.0, 1.0, 2.0, 3.0]},
        "in_channels": 1, "labels": "flare21", "preprocessing": {"spacing": [1.0, 1.0, 1.2]},
        "provenance": {"training_data": {"dataset": "FLARE21", "cases": 361}, "metrics": {"val_dice": 0.9}}}


def make_checkpoint(path):
    card = ModelCard.from_dict(CARD)
    return save_checkpoint(path, {"scale": torch.tensor([1.0, 2, 3, 4, 5])}, card)


def test_info_prints_summary_size_hash_and_parameters(tmp_path, capsys):
    ckpt = make_checkpoint(tmp_path / "model.safetensors")
    assert main(["info", str(ckpt)]) == 0
    out = capsys.readouterr().out
    assert file_sha256(ckpt) in out
    assert "Parameters:     5;" in out  # ThresholdNet: one scale per class
    for needle in ("threshold-test", "pancreas", "1 x 1 x 1.2 mm", "FLARE21", "val_dice 0.9", f"({ckpt.stat().st_size:,} bytes)"):
        assert needle in out, needle
    assert main(["info", str(ckpt), "--json", "--check"]) == 0
    card = ModelCard.from_dict(json.loads(capsys.readouterr().out))
    assert card == read_card(ckpt)


def test_info_on_a_bad_file_is_one_clear_error(tmp_path, capsys):
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(make_checkpoint(tmp_path / "ok.safetensors").read_bytes()[:30])
    assert main(["info", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "broken.safetensors" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_import_with_card_and_force(tmp_path, capsys):
    src = tmp_path / "official.pth"
    torch.save({"epoch": 1, "state_dict": {"module.scale": torch.tensor([3.0, 1, 4, 1, 5])}}, src)
    card = tmp_path / "card.json"
    card.write_text(json.dumps(CARD))
    out = tmp_path / "native.safetensors"
    assert main(["import", str(src), "--card", str(card), "-o", str(out)]) == 0
    assert "official.pth" in capsys.readouterr().out
    model, loaded = load_checkpoint(out)
    assert torch.equal(model.scale.detach(), torch.tensor([3.0, 1, 4, 1, 5]))
    assert loaded.labels == FLARE21 and loaded.preprocessing.spacing == (1.0, 1.0, 1.2)
    assert file_sha256(src) in loaded.provenance.notes
    before = out.read_bytes()
    assert main(["import", str(src), "--card", str(card), "-o", str(out)]) == 2
    assert "--force" in capsys.readouterr().err and out.read_bytes() == before
    assert main(["import", str(src), "--card", str(card), "-o", str(out), "--force"]) == 0
    # without a card file: architecture + built-in label table (hyper-parameters from the paper config)
    raw = tmp_path / "raw.pth"
    torch.save({"scale": torch.ones(2)}, raw)
    assert main(["import", str(raw), "--architecture", "threshold-test", "--labels", str(_one_label(tmp_path)),
                 "-o", str(tmp_path / "raw.safetensors")]) == 0
    assert read_card(tmp_path / "raw.safetensors").out_channels == 2
    five = tmp_path / "five.pth"
    torch.save({"scale": torch.ones(5)}, five)
    assert main(["import", str(five), "--architecture", "threshold-test", "--labels", "FLARE21",
                 "--hp", "thresholds=[0, 1, 2, 3]", "-o", str(tmp_path / "five.safetensors")]) == 0
    assert read_card(tmp_path / "five.safetensors").hyperparameters == {"thresholds": [0, 1, 2, 3]}
    assert main(["import", str(five), "--architecture", "threshold-test", "--labels", "FLARE21",
                 "--hp", "thresholds", "-o", str(tmp_path / "bad.safetensors")]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err


def _one_label(tmp_path):
    path = tmp_path / "one.json"
    path.write_text(json.dumps([{"value": 1, "name": "liver", "color": [200, 100, 80]}]))
    return path


def test_import_errors(tmp_path, capsys):
    card = tmp_path / "card.json"
    card.write_text(json.dumps(dict(CARD, labels="btcv")))  # 14 classes, but 4 thresholds
    src = tmp_path / "w.pth"
    torch.save({"scale": torch.ones(5)}, src)
    assert main(["import", str(src), "--card", str(card), "-o", str(tmp_path / "o.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "w.pth" in err and "out_channels=14" in err
    assert main(["import", str(src), "--card", str(tmp_path / "none.json"), "-o", str(tmp_path / "o.safetensors")]) == 2
    assert "none.json" in capsys.readouterr().err
    assert main(["import", str(src), "-o", str(tmp_path / "o.safetensors")]) == 2
    assert "--card" in capsys.readouterr().err
    assert not (tmp_path / "o.safetensors").exists()


def test_python_dash_m_lkseg_info_subprocess(tmp_path, capsys):
    ckpt = make_checkpoint(tmp_path / "model.safetensors")
    env = dict(os.environ)
    proc = subprocess.run([sys.executable, "-m", "lkseg", "info", str(ckpt)], capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert file_sha256(ckpt) in proc.stdout and "liver" in proc.stdout
    assert main(["info", str(tmp_path / "gone.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "gone.safetensors" in err and "does not exist" in err
