"""Bad input at the command line gets one clear paragraph and an exit code, never a traceback, and
no file the user made is overwritten: outputs that are inputs or references, existing outputs,
impossible numbers, a full disk."""

from __future__ import annotations

import errno
import hashlib
from pathlib import Path

import numpy as np
import pytest
from lkseg.cli import main
from lkseg.io.image import Image
from lkseg.io.imageio import write_image


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def ct(tmp_path: Path) -> Path:
    arr = np.zeros((10, 12, 14), np.float32)
    arr[2:6, 3:8, 4:10] = 1.0
    return write_image(Image(arr, (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), np.eye(3)), tmp_path / "ct.nii.gz")


def test_segment_refuses_to_write_over_its_input(ct, threshold_checkpoint, capsys):
    before = _digest(ct)
    assert main(["segment", str(ct), "-m", str(threshold_checkpoint), "-o", str(ct), "--device", "cpu"]) == 2
    assert "is also an input" in capsys.readouterr().err
    assert main(["segment", str(ct), "-m", str(threshold_checkpoint), "-o", str(ct), "--device", "cpu",
                 "--overwrite"]) == 2  # not even with --overwrite
    assert _digest(ct) == before


def test_segment_refuses_an_existing_output_unless_overwrite(ct, threshold_checkpoint, tmp_path, capsys):
    out = tmp_path / "labels.nii.gz"
    out.write_bytes(b"the user's own file")
    assert main(["segment", str(ct), "-m", str(threshold_checkpoint), "-o", str(out), "--device", "cpu"]) == 2
    assert "already exists" in capsys.readouterr().err and out.read_bytes() == b"the user's own file"
    side = tmp_path / "folder"
    side.mkdir()
    (side / "ct_seg_volumes.csv").write_text("mine")
    assert main(["segment", str(ct), "-m", str(threshold_checkpoint), "-o", str(side), "--volumes",
                 "--device", "cpu"]) == 2
    assert (side / "ct_seg_volumes.csv").read_text() == "mine" and not (side / "ct_seg.nii.gz").exists()
    assert main(["segment", str(ct), "-m", str(threshold_checkpoint), "-o", str(out), "--device", "cpu",
                 "--overwrite"]) == 0
    assert out.read_bytes()[:2] == b"\x1f\x8b"  # now a real (gzip) label file


def test_evaluate_refuses_to_write_its_report_over_a_reference(ct, tmp_path, capsys):
    before = _digest(ct)
    assert main(["evaluate", str(ct), "--reference", str(ct), "--json", str(ct)]) == 2
    assert "is also an input" in capsys.readouterr().err
    assert _digest(ct) == before


@pytest.mark.parametrize("option", [["--batch-size", "0"], ["--lr", "-1"], ["--steps", "0"], ["--minutes", "nan"],
                                    ["--val-fraction", "1.5"], ["--roi", "16", "0", "16"]])
def test_finetune_refuses_impossible_numbers_before_starting(option, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["finetune", "--checkpoint", str(tmp_path / "c.safetensors"), "--dataset", str(tmp_path),
              "--out", str(tmp_path / "job"), *option])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option[0]}" in err and "Traceback" not in err
    assert not (tmp_path / "job").exists()


def test_a_full_disk_is_one_clear_line(ct, threshold_checkpoint, tmp_path, capsys, monkeypatch):
    import lkseg.utils.atomic as atomic

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out.nii.gz"))

    monkeypatch.setattr(atomic.os, "replace", full)
    assert main(["segment", str(ct), "-m", str(threshold_checkpoint), "-o", str(tmp_path / "out.nii.gz"),
                 "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert "no space left on the device" in err and "Traceback" not in err
    assert not (tmp_path / "out.nii.gz").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left behind


def test_info_refuses_a_card_that_does_not_fit_its_tensors(tmp_path, threshold_checkpoint, capsys):
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(threshold_checkpoint), framework="pt") as f:
        meta, state = dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}
    for change, message in (({"architecture": "nosuch"}, "nosuch"),
                            ({"hyperparameters": {"thresholds": [0.5, 1.5, 2.5]}}, "output channels")):
        card = {**json.loads(meta["lkseg_card"]), **change}
        if "hyperparameters" in change:  # three thresholds need four classes
            card["labels"] = {"name": "x", "labels": [{"value": v, "name": f"o{v}"} for v in (1, 2, 3)]}
        bad = tmp_path / "bad.safetensors"
        save_file(state, str(bad), metadata={**meta, "lkseg_card": json.dumps(card)})
        assert main(["info", str(bad)]) == 2
        assert message in capsys.readouterr().err


def test_models_and_jobs_refuse_impossible_arguments(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["models", "--out-channels", "0"])
    (tmp_path / "f").write_text("not a folder")
    assert main(["jobs", "list", str(tmp_path / "f")]) == 2
    assert "is a file" in capsys.readouterr().err
