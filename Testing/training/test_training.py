"""The training loop: real datasets on disk, real networks, real subprocesses (kill, torchrun)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from lkseg.checkpoint.card import (
    InferenceSettings,
    ModelCard,
    Preprocessing,
)
from lkseg.checkpoint.labels import Label, LabelTable
from lkseg.checkpoint.native import (
    file_sha256,
    load_checkpoint,
    read_card,
    save_checkpoint,
)
from lkseg.dataset.local import LocalDataset
from lkseg.errors import LkSegError
from lkseg.io.image import Image
from lkseg.models.registry import build_model, get_spec
from lkseg.training.config import TrainConfig
from lkseg.training.crops import Case, CropSampler, split_cases
from lkseg.training.loop import (
    ProgressLog,
    deep_supervision_loss,
    dice_per_label,
    warmup_cosine,
)
from lkseg.training.ownership import claim_out_folder
from lkseg.training.train import train
from training_cases import TABLE, WINDOW, make_dataset, threshold_checkpoint

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def read_progress(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "progress.jsonl").read_text().splitlines() if line.strip()]


# ----------------------------------------------------------------------------- building blocks
def test_warmup_then_cosine_decay():
    f = warmup_cosine(lambda: 100, warmup=10, floor=0.0)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0) and f(55) == pytest.approx(0.5) and f(100) == pytest.approx(0.0)
    assert all(f(s) >= f(s + 1) for s in range(10, 100))


def test_crops_are_reproducible_padded_and_rank_dependent():
    img = torch.rand(1, 10, 40, 40)
    lab = torch.zeros(1, 10, 40, 40, dtype=torch.long)
    lab[0, 3:6, 5:9, 30:35] = 1
    sampler = CropSampler([Case("a", img, lab)], roi=(16, 16, 16), augment=True)
    x1, y1 = sampler.batch(4, seed=1, rank=0, step=7)
    x2, y2 = sampler.batch(4, seed=1, rank=0, step=7)
    x3, _ = sampler.batch(4, seed=1, rank=1, step=7)
    assert x1.shape == (4, 1, 16, 16, 16) and y1.shape == (4, 1, 16, 16, 16)  # padded along the short axis
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(x1, x3)
    # positive/negative 1:1: over many crops about half hold foreground
    pos = [int(sampler.batch(1, 0, 0, s)[1].sum() > 0) for s in range(40)]
    assert 8 <= sum(pos) <= 32


@pytest.mark.parametrize("profile", ["light", "strong"])
def test_augmentation_never_mirrors_paired_organs(profile):
    """A flipped crop puts the right kidney where the left one is and keeps its label: the sampler's
    augmentation must rotate, scale, deform and change intensity, never mirror."""
    img = torch.rand(1, 32, 32, 16)
    lab = torch.zeros(1, 32, 32, 16, dtype=torch.long)
    lab[0, 2:9, 10:22, 4:12] = 1      # "right kidney" at low X (RAS: X grows to the left)
    lab[0, 23:30, 10:22, 4:12] = 2    # "left kidney" at high X
    lab[0, 12:20, 2:8, 4:12] = 3      # an organ at low Y
    sampler = CropSampler([Case("a", img, lab)], roi=(32, 32, 16), augment=True, profile=profile)
    changed = 0
    for step in range(60):
        _, y = sampler.batch(1, seed=3, rank=0, step=step)
        changed += int(not torch.equal(y, lab[None]))
        xs = [torch.nonzero(y[0, 0] == v).float().mean(0) for v in (1, 2, 3)]
        assert xs[0][0] < 16 < xs[1][0], f"step {step}: the paired organs swapped sides"
        assert xs[2][1] < 16, f"step {step}: the volume was mirrored front to back"
    assert changed >= 15  # the spatial augmentation does act


def _nonlinearity(x: torch.Tensor) -> float:
    """RMS residual of the best affine fit of intensity against voxel position (inner voxels)."""
    v = x[0, 0, 4:-4, 4:-4, 2:-2].double()
    grid = torch.stack(torch.meshgrid(*(torch.arange(n, dtype=torch.float64) for n in v.shape), indexing="ij"), -1)
    a = torch.cat([grid.reshape(-1, 3), torch.ones(v.numel(), 1, dtype=torch.float64)], 1)
    coef = torch.linalg.lstsq(a, v.reshape(-1, 1)).solution
    return float((a @ coef - v.reshape(-1, 1)).pow(2).mean().sqrt())


def test_strong_profile_deforms_and_changes_contrast_where_light_stays_affine():
    """An intensity ramp stays a ramp under rotation, scaling and intensity scale/shift (light); the
    strong profile's elastic field, gamma, noise and blur bend it."""
    ramp = torch.arange(40, dtype=torch.float32)[:, None, None] / 40 + torch.arange(40)[None, :, None] / 80
    img = (ramp + torch.zeros(40, 40, 24))[None] + 0.5
    lab = torch.zeros(1, 40, 40, 24, dtype=torch.long)
    lab[0, 10:30, 10:30, 6:18] = 1
    cases = [Case("a", img, lab)]
    light = [_nonlinearity(CropSampler(cases, (24, 24, 12), profile="light").batch(1, 5, 0, s)[0]) for s in range(24)]
    strong = [_nonlinearity(CropSampler(cases, (24, 24, 12), profile="strong").batch(1, 5, 0, s)[0])
              for s in range(24)]
    assert max(light) < 1e-3, light
    assert sum(r > 2e-3 for r in strong) >= 6, strong
    with pytest.raises(LkSegError, match="augmentation profile"):
        CropSampler(cases, (24, 24, 12), profile="heavy")
    with pytest.raises(LkSegError, match="--augment-profile"):
        TrainConfig(dataset=Path("d"), out=Path("o"), architecture="uxnet", augment_profile="heavy")


def test_split_uses_the_single_case_for_validation_and_says_so():
    train_ids, val_ids, note = split_cases(["a"], None, 0.2)
    assert train_ids == val_ids == ["a"] and "single case" in note
    assert split_cases(["a", "b", "c", "d", "e"], None, 0.2)[:2] == (["a", "b", "c", "d"], ["e"])
    assert split_cases(["a", "b", "c"], ["a"], 0.2)[:2] == (["b", "c"], ["a"])
    train_ids, val_ids, note = split_cases(["a", "b", "c"], None, 0.0)  # the newest correction is trained on
    assert train_ids == val_ids == ["a", "b", "c"] and "no case was held out" in note
    with pytest.raises(LkSegError, match="not in the dataset"):
        split_cases(["a"], ["zz"], 0.2)


def test_dice_and_deep_supervision_loss():
    pred = np.array([0, 1, 1, 2, 2, 2])
    ref = np.array([0, 1, 2, 2, 2, 0])
    d = dice_per_label(pred, ref, [1, 2, 3])
    assert d[1] == pytest.approx(2 / 3) and d[2] == pytest.approx(4 / 6) and d[3] is None
    from monai.losses import DiceCELoss

    loss = DiceCELoss(to_onehot_y=True, softmax=True)
    target = torch.randint(0, 3, (2, 1, 8, 8, 8))
    full, half = torch.randn(2, 3, 8, 8, 8), torch.randn(2, 3, 4, 4, 4)
    small_target = target[:, :, ::2, ::2, ::2]  # nearest downsampling picks these voxels
    expected = (2 / 3) * loss(full, target) + (1 / 3) * loss(half, small_target)
    assert deep_supervision_loss(loss, [full, half], target).item() == pytest.approx(expected.item(), rel=1e-5)
    assert deep_supervision_loss(loss, full, target).item() == pytest.approx(loss(full, target).item())


def test_progress_log_restore_drops_lines_past_the_resume_point(tmp_path):
    path = tmp_path / "progress.jsonl"
    path.write_text("".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in range(1, 8)) + '{"step": 8, "lo')
    log = ProgressLog(path)
    log.restore(5)
    assert [r["step"] for r in read_progress(tmp_path)] == [1, 2, 3, 4, 5]


# ----------------------------------------------------------------------------- runs
def test_finetune_writes_checkpoints_whose_card_names_parent_data_and_scores(tmp_path):
    make_dataset(tmp_path / "ds")
    parent = threshold_checkpoint(tmp_path / "parent.safetensors", scale=0.3)
    seen: list[dict] = []
    best = train(TrainConfig(dataset=tmp_path / "ds", out=tmp_path / "job", checkpoint=parent, steps=4,
                             val_every=2, checkpoint_every=2, device="cpu", lr=0.05), progress=seen.append)
    job = tmp_path / "job"
    assert best == job / "checkpoints" / "best.safetensors" and best.is_file()
    assert (job / "checkpoints" / "last.safetensors").is_file()
    recs = read_progress(job)
    assert [r["step"] for r in recs[:-1]] == [1, 2, 3, 4]
    for r in recs[:-1]:
        assert {"step", "epoch", "loss", "lr", "val_dice", "eta_s", "time"} <= set(r)
    assert recs[0]["val_dice"] is None and recs[1]["val_dice"] is not None
    assert recs[-1]["event"] == "done" and recs[-1]["best"] == str(best)
    assert [r["step"] for r in seen] == [1, 2, 3, 4, 4]
    assert (job / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    card = read_card(best)
    prov = card.provenance
    assert prov.parent_sha256 == file_sha256(parent)
    assert prov.training_data["cases"] == ["case_0000", "case_0001"] and prov.training_data["num_cases"] == 2
    assert prov.training_data["val_cases"] == ["case_0002"] and prov.training_data["dataset"] == "synthetic"
    assert set(prov.metrics["val_dice"]) == {"liver", "spleen"}
    assert prov.metrics["val_dice_mean"] == pytest.approx(np.mean(list(prov.metrics["val_dice"].values())))
    assert prov.created.endswith("Z") and card.labels.same_as(TABLE)
    model, _ = load_checkpoint(best)
    assert not torch.allclose(model.scale, torch.full((3,), 0.3))  # the weights were trained
    state = torch.load(job / "checkpoints" / "resume.pt", weights_only=True)
    assert state["step"] == 4 and state["finished"] is True
    # a rerun of a finished job does nothing and returns the same best checkpoint
    mtime = best.stat().st_mtime_ns
    assert train(TrainConfig(dataset=tmp_path / "ds", out=job, checkpoint=parent, steps=4, device="cpu")) == best
    assert best.stat().st_mtime_ns == mtime


def test_minutes_budget_fixes_the_run_length_after_measuring_speed(tmp_path):
    make_dataset(tmp_path / "ds")
    parent = threshold_checkpoint(tmp_path / "parent.safetensors")
    t0 = time.monotonic()
    train(TrainConfig(dataset=tmp_path / "ds", out=tmp_path / "job", checkpoint=parent, minutes=0.03,
                      val_every=10**6, device="cpu"))
    assert time.monotonic() - t0 < 20
    recs = read_progress(tmp_path / "job")
    steps = [r["step"] for r in recs if "event" not in r]
    assert recs[-1]["event"] == "done" and steps == list(range(1, len(steps) + 1)) and len(steps) > 3
    assert recs[0]["eta_s"] is None and recs[-2]["eta_s"] == 0.0  # no ETA until the length is known


def test_minutes_budget_is_measured_again_once_the_steps_are_steady():
    """The first steps are slow: a length fixed from them alone ended runs minutes early."""
    from lkseg.training.loop import TimeBudget

    budget = TimeBudget(minutes=1.0)
    assert budget.length(done=2, step=2, elapsed=8.0, step_avg=4.0) is None
    first = budget.length(done=3, step=3, elapsed=9.0, step_avg=3.0)  # 51 s left at 3 s/step
    assert first == 3 + int(0.95 * 51 / 3)
    assert budget.length(done=10, step=10, elapsed=16.0, step_avg=1.0) is None
    # 20 steps later: they took 1 s each, so the run gets longer, to end near the budget
    assert budget.length(done=23, step=23, elapsed=29.0, step_avg=1.0) == 23 + int(0.95 * 31 / 1)
    assert budget.length(done=43, step=43, elapsed=49.0, step_avg=1.0) is None  # measured twice, then fixed


def test_patience_stops_when_validation_dice_stops_improving(tmp_path):
    """Early stopping: a learning rate too small to change the score leaves validation Dice flat, so
    --patience 2 with validation every step stops at step 3 (best at step 1) instead of running 20."""
    make_dataset(tmp_path / "ds", n=2)
    parent = threshold_checkpoint(tmp_path / "parent.safetensors", scale=0.3)
    common = dict(dataset=tmp_path / "ds", checkpoint=parent, steps=20, val_every=1, lr=1e-12, device="cpu")
    best = train(TrainConfig(out=tmp_path / "job", patience=2, **common))
    rows = read_progress(tmp_path / "job")
    done = rows[-1]
    assert done["event"] == "done" and done["stopped_early"] == 3 and done["best_step"] == 1
    assert max(r["step"] for r in rows) == 3
    assert read_card(best).provenance.metrics["step"] == 1
    train(TrainConfig(out=tmp_path / "full", **common))  # without --patience the run goes the distance
    assert max(r["step"] for r in read_progress(tmp_path / "full")) == 20
    with pytest.raises(LkSegError, match="--patience must be at least 1"):
        TrainConfig(dataset=Path("d"), out=Path("o"), architecture="uxnet", patience=0)


def test_damaged_resume_state_is_refused_not_silently_restarted(tmp_path):
    make_dataset(tmp_path / "ds")
    parent = threshold_checkpoint(tmp_path / "parent.safetensors")
    config = TrainConfig(dataset=tmp_path / "ds", out=tmp_path / "job", checkpoint=parent, steps=2, device="cpu")
    claim_out_folder(config)  # what the run's first start records, before a crash damaged its state
    (tmp_path / "job" / "checkpoints").mkdir(parents=True)
    (tmp_path / "job" / "checkpoints" / "resume.pt").write_bytes(b"PK\x03\x04 truncated")
    (tmp_path / "job" / "checkpoints" / ".resume.pt.abc123.tmp").write_bytes(b"half-written")
    with pytest.raises(LkSegError, match="resume.pt is unreadable"):
        train(config)


def test_dataset_labels_the_model_lacks_are_refused(tmp_path):
    other = LabelTable([Label(1, "liver", (1, 2, 3)), Label(2, "pancreas", (1, 2, 3))])
    ds = LocalDataset.create(tmp_path / "ds", other)
    img = Image(np.zeros((8, 8, 8), np.int16))
    ds.add_case(img, img.with_array(np.ones((8, 8, 8), np.uint8)), other)
    parent = threshold_checkpoint(tmp_path / "p.safetensors")
    with pytest.raises(LkSegError, match="pancreas"):
        train(TrainConfig(dataset=tmp_path / "ds", out=tmp_path / "job", checkpoint=parent, steps=1, device="cpu"))


def test_uxnet_from_scratch_single_case(tmp_path):
    ds = make_dataset(tmp_path / "ds", n=1, shape=(24, 28, 30))
    best = train(TrainConfig(dataset=ds.root, out=tmp_path / "job", architecture="uxnet", model_config="small",
                             steps=2, val_every=2, roi=(32, 32, 32), batch_size=1, device="cpu"))
    model, card = load_checkpoint(best)
    assert card.architecture == "uxnet" and card.provenance.parent_sha256 is None
    assert card.inference.roi_size == (32, 32, 32) and card.labels.same_as(TABLE)
    assert "single case" in card.provenance.metrics["notes"]
    expected = {**get_spec("uxnet").paper_config, **get_spec("uxnet").small_config}
    assert card.hyperparameters == json.loads(json.dumps(expected))  # JSON turns tuples into lists


def test_repuxnet_trains_reparameterized_and_unfolds_deploy_checkpoints(tmp_path):
    ds = make_dataset(tmp_path / "ds", n=2)
    spec = get_spec("repuxnet")
    hp = {**spec.paper_config, **spec.small_config, "deploy": True}
    folded = build_model("repuxnet", 1, 3, **{**hp, "deploy": False}).fold()
    card = ModelCard("repuxnet", hp, 1, TABLE, preprocessing=Preprocessing(intensity=dict(WINDOW)),
                     inference=InferenceSettings(roi_size=(32, 32, 32), sw_batch_size=1))
    parent = save_checkpoint(tmp_path / "folded.safetensors", folded.state_dict(), card)
    best = train(TrainConfig(dataset=ds.root, out=tmp_path / "job", checkpoint=parent, steps=1, batch_size=1,
                             device="cpu", lr=1e-12, weight_decay=0.0))
    model, new_card = load_checkpoint(best)
    assert new_card.hyperparameters["deploy"] is False
    blocks = [(n, m) for n, m in model.named_modules() if hasattr(m, "bfm")]
    assert blocks
    old = folded.state_dict()
    for name, block in blocks:  # raw weights now; raw x BFM gives back the folded kernels
        eff = block.dwconv.weight * block.bfm
        assert torch.allclose(eff, old[f"{name}.dwconv.weight"], atol=1e-5)
        assert not torch.allclose(block.dwconv.weight, old[f"{name}.dwconv.weight"])


@pytest.mark.slow
def test_mednext_upkern_and_deep_supervision(tmp_path):
    ds = make_dataset(tmp_path / "ds", n=2)
    small = {**get_spec("mednext").small_config, "deep_supervision": True}
    k3 = train(TrainConfig(dataset=ds.root, out=tmp_path / "k3", architecture="mednext", model_config="small",
                           hparams={"deep_supervision": True}, steps=1, roi=(32, 32, 32), batch_size=1,
                           device="cpu"))
    assert read_card(k3).hyperparameters["deep_supervision"] is True
    k5 = train(TrainConfig(dataset=ds.root, out=tmp_path / "k5", upkern_from=k3, steps=1, roi=(32, 32, 32),
                           batch_size=1, device="cpu", lr=1e-12))
    card = read_card(k5)
    assert card.architecture == "mednext" and card.hyperparameters["kernel_size"] == 5
    assert card.provenance.parent_sha256 == file_sha256(k3)
    m3, _ = load_checkpoint(k3)
    m5, _ = load_checkpoint(k5)
    assert small["kernel_size"] == 3
    k3_kernels = {k: v for k, v in m3.state_dict().items() if v.dim() == 5 and v.shape[-1] == 3}
    assert k3_kernels and all(m5.state_dict()[k].shape[-1] == 5 for k in k3_kernels)
    # UpKern keeps the centre profile: the middle of a 3->5 trilinear resize is the old middle
    k = next(iter(k3_kernels))
    assert torch.allclose(m5.state_dict()[k][..., 2, 2, 2], k3_kernels[k][..., 1, 1, 1], atol=1e-4)


def _training_cmd(ds: Path, out: Path, ckpt: Path, steps: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "lkseg.training", "--dataset", str(ds), "--out", str(out), "--checkpoint",
            str(ckpt), "--steps", str(steps), "--device", "cpu", "--lr", "0.05", *extra]


@pytest.mark.slow
def test_sigkill_then_rerun_continues_from_last_checkpoint(tmp_path):
    make_dataset(tmp_path / "ds")
    parent = threshold_checkpoint(tmp_path / "parent.safetensors", scale=0.3)
    out = tmp_path / "job"
    cmd = _training_cmd(tmp_path / "ds", out, parent, 400, "--checkpoint-every", "5", "--val-every", "1000")
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    killed_at = 0
    try:
        while time.monotonic() < deadline:
            if (out / "progress.jsonl").is_file():
                steps = [r["step"] for r in read_progress(out)]
                if steps and steps[-1] >= 13:
                    os.kill(proc.pid, signal.SIGKILL)
                    break
            time.sleep(0.02)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed_at = read_progress(out)[-1]["step"]
    assert killed_at >= 13
    saved = torch.load(out / "checkpoints" / "resume.pt", weights_only=True)["step"]
    assert saved % 5 == 0 and killed_at - 5 <= saved <= killed_at
    # rerun the same command for a shorter run so the test is quick: it resumes, not restarts
    cmd[cmd.index("--steps") + 1] = str(saved + 3)
    rerun = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"from step {saved}" in rerun.stderr
    steps = [r["step"] for r in read_progress(out) if "event" not in r]
    assert steps == list(range(1, saved + 4))  # continues, nothing lost before the checkpoint, no duplicates
    assert read_progress(out)[-1]["event"] == "done"


@pytest.mark.slow
def test_torchrun_two_ranks_hold_identical_weights(tmp_path):
    make_dataset(tmp_path / "ds")
    parent = threshold_checkpoint(tmp_path / "parent.safetensors", scale=0.3)
    out = tmp_path / "job"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "lkseg.training", "--dataset", str(tmp_path / "ds"), "--out", str(out), "--checkpoint", str(parent),
           "--steps", "3", "--device", "cpu", "--lr", "0.05", "--val-every", "3", "--debug-dump-weights"]
    res = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    h0 = json.loads((out / "debug" / "weights_rank0.json").read_text())
    h1 = json.loads((out / "debug" / "weights_rank1.json").read_text())
    assert h0["step"] == h1["step"] == 3
    assert h0["initial"] == h1["initial"] and h0["final"] == h1["final"]
    assert h0["final"] != h0["initial"]  # they trained, and stayed in sync
    card = read_card(out / "checkpoints" / "best.safetensors")
    assert card.provenance.training_data["world_size"] == 2
    assert [r["step"] for r in read_progress(out) if "event" not in r] == [1, 2, 3]  # rank 0 alone writes


DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "Resources" / "Models" / "default_model.safetensors"


def test_bundled_default_model_says_what_it_was_trained_on():
    assert DEFAULT_MODEL.stat().st_size < 5 * 2**20
    card = read_card(DEFAULT_MODEL)
    prov = card.provenance
    assert card.architecture == "uxnet" and card.labels.names == ["liver", "spleen", "right kidney",
                                                                  "left kidney", "stomach"]
    assert "NOT FOR CLINICAL USE" in prov.notes and "model" in prov.training_data["labels"]
    assert prov.training_data["patients"] == 1 and prov.training_data["recipe"] == "scripts/train_default_model.py"
    assert set(prov.training_data["heldout_slices_k"]).isdisjoint(prov.training_data["train_slices_k"])
    # the recipe against overfitting one patient: strong augmentation, early stopping on the held-out slab,
    # which the card owns up to (its held-out scores chose the checkpoint)
    assert prov.training_data["augmentation"] == "strong"
    assert prov.training_data["checkpoint_chosen_by"] == "held-out slab Dice" and "optimistic" in prov.notes
    assert prov.training_data["best_step"] <= prov.training_data["steps_run"]
    assert set(prov.metrics["heldout_dice"]) == set(card.labels.names)
    sample = DEFAULT_MODEL.parents[1] / "Data" / "sample_ct.nii.gz"
    import hashlib

    assert hashlib.sha256(sample.read_bytes()).hexdigest() == prov.training_data["source_sha256"]
