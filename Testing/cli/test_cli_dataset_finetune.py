"""``lkseg dataset`` and ``lkseg finetune`` on the real TotalSegmentator example CT (the bundled sample CT)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from lkseg.checkpoint.card import InferenceSettings, ModelCard, Preprocessing
from lkseg.checkpoint.labels import ANATOMICAL_STRUCTURE, Label, LabelTable
from lkseg.checkpoint.native import file_sha256, read_card, save_checkpoint
from lkseg.cli import main
from lkseg.models.registry import build_model
from repo_data import DATA, SAMPLE_CT

CT = SAMPLE_CT
SEG = DATA / "totalsegmentator" / "example_seg.nii.gz"  # model-made labels (TotalSegmentator), not ground truth

#: TotalSegmentator value -> our value: liver (5) -> 1, spleen (1) -> 2
TABLE = LabelTable([Label(1, "liver", (221, 130, 101), ANATOMICAL_STRUCTURE, None),
                    Label(2, "spleen", (157, 108, 162), ANATOMICAL_STRUCTURE, None)], name="liver+spleen")


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    seg = sitk.ReadImage(str(SEG))
    a = sitk.GetArrayFromImage(seg)
    mapped = np.zeros(a.shape, np.uint8)
    mapped[a == 5], mapped[a == 1] = 1, 2
    out = sitk.GetImageFromArray(mapped)
    out.CopyInformation(seg)
    labels = tmp_path / "liver_spleen.nii.gz"
    sitk.WriteImage(out, str(labels))
    table = tmp_path / "table.json"
    table.write_text(json.dumps({"name": TABLE.name, "labels": TABLE.to_list()}))
    swapped = tmp_path / "swapped.json"  # the same organs, other values
    swapped.write_text(json.dumps([{"value": 1, "name": "Spleen", "color": [1, 2, 3]},
                                   {"value": 2, "name": "Liver", "color": [4, 5, 6]}]))
    model = build_model("threshold-test", 1, 3, thresholds=[0.4, 0.7])
    with torch.no_grad():
        model.scale.fill_(0.5)
    card = ModelCard("threshold-test", {"thresholds": [0.4, 0.7]}, 1, TABLE,
                     preprocessing=Preprocessing(spacing=(6.0, 6.0, 6.0)),
                     inference=InferenceSettings(roi_size=(16, 16, 16), sw_batch_size=8))
    ckpt = save_checkpoint(tmp_path / "parent.safetensors", model.state_dict(), card)
    return {"labels": labels, "table": table, "swapped": swapped, "ckpt": ckpt, "root": tmp_path}


def test_dataset_add_list_check(files, capsys):
    ds = files["root"] / "ds"
    assert main(["dataset", "add", str(CT), str(files["labels"]), "--dataset", str(ds), "--labels",
                 str(files["table"]), "--case-id", "ts1"]) == 0
    assert main(["dataset", "add", str(CT), str(files["labels"]), "--dataset", str(ds),
                 "--checkpoint", str(files["ckpt"])]) == 0
    # a table with liver/spleen swapped is refused, then accepted with --map-by-name (re-export of ts1)
    assert main(["dataset", "add", str(CT), str(files["labels"]), "--dataset", str(ds), "--labels",
                 str(files["swapped"]), "--case-id", "ts1"]) == 2
    assert "disagrees" in capsys.readouterr().err
    assert main(["dataset", "add", str(CT), str(files["labels"]), "--dataset", str(ds), "--labels",
                 str(files["swapped"]), "--case-id", "ts1", "--map-by-name"]) == 0
    stored = sitk.GetArrayFromImage(sitk.ReadImage(str(ds / "labelsTr" / "ts1.nii.gz")))
    original = sitk.GetArrayFromImage(sitk.ReadImage(str(files["labels"])))
    assert np.array_equal(stored == 1, original == 2)  # "Spleen" (1 in that table) is the dataset's spleen, 2
    assert len(list((ds / "labelsTr" / "history").glob("ts1.*.nii.gz"))) == 1
    capsys.readouterr()
    assert main(["dataset", "list", str(ds)]) == 0
    out = capsys.readouterr().out
    assert "2 cases" in out and "ts1" in out and "case_0001" in out and "122x101x30 voxels" in out
    assert main(["dataset", "check", str(ds)]) == 0
    (ds / "imagesTr" / "case_0001_0000.nii.gz").unlink()
    capsys.readouterr()
    assert main(["dataset", "check", str(ds)]) == 1
    assert "case case_0001: missing file imagesTr/case_0001_0000.nii.gz" in capsys.readouterr().out


def test_new_dataset_needs_a_table(files, capsys):
    assert main(["dataset", "add", str(CT), str(files["labels"]), "--dataset", str(files["root"] / "new")]) == 2
    assert "--labels" in capsys.readouterr().err


def test_finetune_then_segment_with_the_new_checkpoint(files, capsys):
    ds, job = files["root"] / "ds", files["root"] / "job"
    assert main(["dataset", "add", str(CT), str(files["labels"]), "--dataset", str(ds), "--labels",
                 str(files["table"])]) == 0
    rc = main(["finetune", "--checkpoint", str(files["ckpt"]), "--dataset", str(ds), "--out", str(job),
               "--steps", "3", "--val-every", "3", "--roi", "16", "16", "16", "--device", "cpu", "--lr", "0.05"])
    assert rc == 0
    out = capsys.readouterr().out
    best = job / "checkpoints" / "best.safetensors"
    assert f"best checkpoint: {best}" in out and "liver" in out and "spleen" in out
    card = read_card(best)
    assert card.provenance.parent_sha256 == file_sha256(files["ckpt"])
    assert card.provenance.training_data["cases"] == ["case_0000"]
    assert set(card.provenance.metrics["val_dice"]) == {"liver", "spleen"}
    assert "single case" in card.provenance.notes
    # the new checkpoint segments the real CT on its own grid
    seg_out = files["root"] / "seg"
    assert main(["segment", str(CT), "-m", str(best), "-o", str(seg_out), "--device", "cpu"]) == 0
    written = list(seg_out.glob("*.nii.gz"))
    assert len(written) == 1
    lab, ct = sitk.ReadImage(str(written[0])), sitk.ReadImage(str(CT))
    assert lab.GetSize() == ct.GetSize() and np.allclose(lab.GetOrigin(), ct.GetOrigin())


def test_finetune_from_scratch_and_option_errors(files, capsys):
    ds = files["root"] / "ds"
    main(["dataset", "add", str(CT), str(files["labels"]), "--dataset", str(ds), "--labels", str(files["table"])])
    capsys.readouterr()
    rc = main(["finetune", "--architecture", "threshold-test", "--labels", str(files["table"]), "--hparams",
               '{"thresholds": [0.4, 0.7]}', "--dataset", str(ds), "--out", str(files["root"] / "job"),
               "--steps", "1", "--roi", "16", "16", "16", "--spacing", "6", "6", "6", "--device", "cpu"])
    assert rc == 0
    card = read_card(files["root"] / "job" / "checkpoints" / "best.safetensors")
    assert card.architecture == "threshold-test" and card.provenance.parent_sha256 is None
    assert card.preprocessing.spacing == (6.0, 6.0, 6.0)
    with pytest.raises(SystemExit):  # argparse: a source is required
        main(["finetune", "--dataset", str(ds), "--out", str(files["root"] / "j2")])
    assert main(["finetune", "--checkpoint", str(files["root"] / "missing.safetensors"), "--dataset", str(ds),
                 "--out", str(files["root"] / "j3"), "--steps", "1", "--device", "cpu"]) == 2
    assert "missing.safetensors" in capsys.readouterr().err


def test_finetune_background_job(files):
    from lkseg import jobs
    ds, job = files["root"] / "ds", files["root"] / "bgjob"
    main(["dataset", "add", str(CT), str(files["labels"]), "--dataset", str(ds), "--labels", str(files["table"])])
    assert main(["finetune", "--checkpoint", str(files["ckpt"]), "--dataset", str(ds), "--out", str(job),
                 "--steps", "2", "--roi", "16", "16", "16", "--device", "cpu", "--background"]) == 0
    deadline = time.monotonic() + 60
    state = None
    while time.monotonic() < deadline:
        state = jobs.job_status(job).get("state")
        if state in ("done", "failed", "cancelled"):
            break
        time.sleep(0.5)
    assert state == "done", (job / "log.txt").read_text() if (job / "log.txt").is_file() else state
    assert (job / "checkpoints" / "best.safetensors").is_file()
