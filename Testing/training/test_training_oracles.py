"""Training oracles that can fail, on a small real case.

The case is the bundled abdominal CT (``Resources/Data/sample_ct.nii.gz``, 122x101x30 voxels,
3 mm) with TotalSegmentator's labels for it (``Testing/Data/totalsegmentator/example_seg.nii.gz``).
Those labels are MODEL-MADE (TotalSegmentator's output), not manual ground truth, and the one
case is used for training and validation alike: the Dice values here say that the loop learns
and that its bookkeeping is right, never how accurate a model is.

What the tests prove (small UX-Net from scratch, 6 mm, 32x32x16 crops: the CT is 15 slices deep
at 6 mm; one CPU thread, deterministic, fixed seed):

* the optimisation works: the training loss falls and validation Dice rises over a few dozen
  steps (a sign error, a dead optimiser or a broken validation fails it);
* ``best.safetensors`` is the best validation score's model: its card holds the maximum score of
  ``progress.jsonl`` at the step it was reached, its weights score that again when evaluated
  independently, and it differs from ``last.safetensors`` when the last validation was worse;
* resume is exact: a run interrupted (cancelled, or crashed after its last periodic resume
  state) and rerun ends bit for bit where the uninterrupted run ends: same weights (last and
  best), same losses, learning rates and scores per step, whatever ``checkpoint_every`` is.
  Losing the LR schedule, the AdamW moments, the step count, the best score so far, the torch
  RNG (stochastic depth is on, so the RNG matters) or drawing crops from a stream that is not
  resumed all break it.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from lkseg.checkpoint.labels import ANATOMICAL_STRUCTURE, Label, LabelTable
from lkseg.checkpoint.native import load_checkpoint, read_card
from lkseg.dataset.local import LocalDataset
from lkseg.errors import Cancelled
from lkseg.io.imageio import read_image
from lkseg.training.config import TrainConfig
from lkseg.training.train import train

REPO = Path(__file__).resolve().parents[2]
CT = REPO / "Resources" / "Data" / "sample_ct.nii.gz"
SEG = REPO / "Testing" / "Data" / "totalsegmentator" / "example_seg.nii.gz"
#: TotalSegmentator "total" values (example_seg_labels.tsv): 1 spleen, 5 liver
TS_VALUES = {"liver": 5, "spleen": 1}
ORGANS = {"liver": Label(1, "liver", (220, 130, 100), ANATOMICAL_STRUCTURE, None),
          "spleen": Label(2, "spleen", (157, 108, 162), ANATOMICAL_STRUCTURE, None)}

pytestmark = pytest.mark.skipif(not (CT.is_file() and SEG.is_file()), reason="the real example case is missing")


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """TrainConfig(num_threads=...) sets torch's global thread count; give it back afterwards."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def ct_dataset(root: Path, organs: tuple[str, ...]) -> LocalDataset:
    """A one-case LocalDataset: the real CT with the TotalSegmentator labels of ``organs`` only,
    renumbered 1, 2, ... in that order."""
    table = LabelTable([dataclasses.replace(ORGANS[o], value=i) for i, o in enumerate(organs, start=1)],
                       name="+".join(organs))
    image, seg = read_image(CT), read_image(SEG)
    assert image.same_grid(seg)
    lab = np.zeros(seg.array.shape, np.uint8)
    for value, organ in enumerate(organs, start=1):
        lab[np.asarray(seg.array) == TS_VALUES[organ]] = value
        assert (lab == value).sum() > 1000, organ  # the organ is really there
    ds = LocalDataset.create(root, table, name="totalsegmentator-example")
    ds.add_case(image, seg.with_array(lab), table)
    return ds


def config(ds: LocalDataset, out: Path, **kw) -> TrainConfig:
    """Small UX-Net from scratch at 6 mm, 32x32x16 crops (the whole depth), one CPU thread, reproducible.

    One thread: on two shared cores, two threads per process run several times slower."""
    base = {"architecture": "uxnet", "model_config": "small", "spacing": (6.0, 6.0, 6.0), "roi": (32, 32, 16),
            "batch_size": 2, "device": "cpu", "num_threads": 1, "deterministic": True, "seed": 0}
    return TrainConfig(dataset=ds.root, out=out, **{**base, **kw})


def rows(out: Path) -> list[dict]:
    """The step records of progress.jsonl (without the final "done" event)."""
    lines = (out / "progress.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if "event" not in r]


def validations(out: Path) -> list[dict]:
    return [r for r in rows(out) if r["val_dice"] is not None]


def weights(path: Path) -> dict[str, torch.Tensor]:
    model, _ = load_checkpoint(path)
    return model.state_dict()


def independent_dice(ckpt: Path, ds: LocalDataset) -> float:
    """Mean Dice of a checkpoint on the case, in network space, computed here (MONAI sliding
    window + numpy), not by the training loop's validation code."""
    from lkseg.training.crops import load_cases
    from monai.inferers import sliding_window_inference

    torch.set_num_threads(1)  # given back by _restore_torch_threads
    model, card = load_checkpoint(ckpt)
    (case,) = load_cases(ds, ds.cases(), card.preprocessing)
    inf = card.inference
    with torch.no_grad():
        logits = sliding_window_inference(case.image[None], inf.roi_size, inf.sw_batch_size, model,
                                          overlap=inf.overlap, mode="gaussian")
    pred, ref = logits.argmax(1)[0].numpy(), case.label[0].numpy()
    scores = []
    for v in card.labels.values:
        a, b = pred == v, ref == v
        if a.any() or b.any():
            scores.append(2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum()))
    return float(np.mean(scores))


# ----------------------------------------------------------------------------- 1. it learns
def test_loss_falls_and_validation_dice_rises_on_the_real_ct(tmp_path):
    ds = ct_dataset(tmp_path / "ds", ("liver",))
    out = tmp_path / "job"
    train(config(ds, out, steps=30, val_every=3, lr=3e-3))
    recs = rows(out)
    assert [r["step"] for r in recs] == list(range(1, 31))
    loss = np.array([r["loss"] for r in recs])
    assert np.isfinite(loss).all() and (loss > 0).all()  # Dice + CE is positive
    early, late = loss[:5].mean(), loss[-5:].mean()
    assert late < early - 0.2, f"loss did not fall: first 5 steps {early:.3f}, last 5 steps {late:.3f}"
    vals = validations(out)
    assert [r["step"] for r in vals] == list(range(3, 31, 3))
    first, last = vals[0]["val_dice"], vals[-1]["val_dice"]
    assert last > first + 0.15, f"validation Dice did not rise: {first} -> {last}"
    assert last > 0.65, f"the liver was not learnt (Dice {last})"
    assert vals[-1]["val_dice_per_label"] == {"liver": last}
    card = read_card(out / "checkpoints" / "last.safetensors")
    assert card.provenance.metrics["val_dice_mean"] == last and card.provenance.metrics["step"] == 30


# ----------------------------------------------------------------------------- 2. best is the best
STEPS = 24


def peak_config(ds: LocalDataset, out: Path, checkpoint_every: int) -> TrainConfig:
    """Warm-up over the whole run to a high peak LR: Dice rises while the LR is moderate, and the
    growing LR usually knocks it back, so the best validation is mostly not the last one. The LR
    changes every step (a lost schedule shows) and stochastic depth draws from torch's RNG every
    step (a lost RNG state shows)."""
    return config(ds, out, steps=STEPS, val_every=3, checkpoint_every=checkpoint_every, lr=0.1,
                  warmup_steps=STEPS, hparams={"drop_path_rate": 0.3})


@pytest.fixture(scope="module")
def peak_run(tmp_path_factory):
    """Run A: liver + spleen, STEPS steps in one go (resume state saved only at the end)."""
    n = torch.get_num_threads()
    root = tmp_path_factory.mktemp("peak")
    ds = ct_dataset(root / "ds", ("liver", "spleen"))
    train(peak_config(ds, root / "job", checkpoint_every=STEPS))
    torch.set_num_threads(n)
    return ds, root / "job"


def test_best_checkpoint_holds_the_best_validation_score(peak_run):
    ds, out = peak_run
    vals = validations(out)
    assert [r["step"] for r in vals] == list(range(3, STEPS + 1, 3))
    scores = [r["val_dice"] for r in vals]
    top = max(scores)
    top_row = vals[scores.index(top)]  # the first time the maximum was reached
    assert scores[0] < top, f"validation never improved: {scores}"  # a best that keeps the first fails here

    best = read_card(out / "checkpoints" / "best.safetensors").provenance.metrics
    assert best["val_dice_mean"] == top and best["step"] == top_row["step"]
    assert best["val_dice"] == top_row["val_dice_per_label"]
    last = read_card(out / "checkpoints" / "last.safetensors").provenance.metrics
    assert last["val_dice_mean"] == scores[-1] and last["step"] == STEPS
    resume = torch.load(out / "checkpoints" / "resume.pt", weights_only=True)
    assert resume["best_dice"] == top and resume["best_step"] == top_row["step"]

    wb, wl = weights(out / "checkpoints" / "best.safetensors"), weights(out / "checkpoints" / "last.safetensors")
    if top_row["step"] != STEPS:  # (whether the peak LR knocks the score back after its best varies by machine)
        assert any(not torch.equal(wb[k], wl[k]) for k in wb), "best.safetensors is the last model"
    # the weights behind each card really score what the card says
    assert independent_dice(out / "checkpoints" / "best.safetensors", ds) == pytest.approx(top, abs=2e-4)
    assert independent_dice(out / "checkpoints" / "last.safetensors", ds) == pytest.approx(scores[-1], abs=2e-4)


# ----------------------------------------------------------------------------- 3. resume is exact
class CancelAfter:
    """``cancel`` for train(): set once ``n`` step records have been reported."""

    def __init__(self, n: int) -> None:
        self.n, self.seen = n, 0

    def progress(self, record: dict) -> None:
        if "event" not in record:
            self.seen = record["step"]

    def is_set(self) -> bool:
        return self.seen >= self.n


def crash_at(n: int):
    """A progress callback that raises at step ``n`` (after its progress line, before its save)."""

    def progress(record: dict) -> None:
        if record.get("step") == n and "event" not in record:
            raise RuntimeError("simulated crash")

    return progress


CRASH_AT, SAVE_EVERY = 7, 5


def test_interrupted_and_resumed_run_equals_the_uninterrupted_one(peak_run, tmp_path):
    """Run B, with its own out folder and resume state every SAVE_EVERY steps (A: only at the end),
    is interrupted twice: a crash at step CRASH_AT (steps after the last periodic save are lost and
    redone), then a cancel about two steps after A's best validation (where the run allows), between
    two validations and off the periodic saves, so that the resumed part must know the best score so
    far (a lost one makes the next, lower score best) and the cancel must save its own resume state."""
    ds, job_a = peak_run
    job_b = tmp_path / "job"
    cfg = peak_config(ds, job_b, checkpoint_every=SAVE_EVERY)
    best_step = torch.load(job_a / "checkpoints" / "resume.pt", weights_only=True)["best_step"]
    stop = min(max(best_step + 2, CRASH_AT + 1), STEPS - 4)  # after the crash, and the best where possible
    while stop % 3 == 0 or stop % SAVE_EVERY == 0:  # between two validations, not on a periodic save
        stop += 1  # (on a periodic save, a cancel that forgot to save its resume state would go unseen)
    assert CRASH_AT < stop < STEPS and CRASH_AT % SAVE_EVERY and stop % 3 and stop % SAVE_EVERY

    def resume_state() -> dict:
        return torch.load(job_b / "checkpoints" / "resume.pt", weights_only=True)

    with pytest.raises(RuntimeError, match="simulated crash"):  # dies before its own save
        train(cfg, progress=crash_at(CRASH_AT))
    assert resume_state()["step"] == CRASH_AT // SAVE_EVERY * SAVE_EVERY and not resume_state()["finished"]
    assert [r["step"] for r in rows(job_b)] == list(range(1, CRASH_AT + 1))

    cancel = CancelAfter(stop)  # resumes, saves the resume state at `stop`, raises Cancelled
    with pytest.raises(Cancelled):
        train(cfg, progress=cancel.progress, cancel=cancel)
    assert resume_state()["step"] == stop and not resume_state()["finished"]
    assert [r["step"] for r in rows(job_b)] == list(range(1, stop + 1))  # lost steps redone once

    train(cfg)  # same config, same out: resumes from checkpoints/resume.pt to the end

    a, b = rows(job_a), rows(job_b)
    assert [r["step"] for r in b] == list(range(1, STEPS + 1))  # nothing lost, nothing twice
    keys = ("step", "epoch", "loss", "lr", "val_dice", "val_dice_per_label")
    assert [{k: r.get(k) for k in keys} for r in b] == [{k: r.get(k) for k in keys} for r in a]
    for name in ("last.safetensors", "best.safetensors"):
        wa, wb = weights(job_a / "checkpoints" / name), weights(job_b / "checkpoints" / name)
        assert wa.keys() == wb.keys()
        differ = [k for k in wa if not torch.equal(wa[k], wb[k])]
        assert not differ, f"{name}: {len(differ)} of {len(wa)} tensors differ, e.g. {differ[:3]}"
        assert read_card(job_b / "checkpoints" / name).provenance.metrics == \
            read_card(job_a / "checkpoints" / name).provenance.metrics
    ra = torch.load(job_a / "checkpoints" / "resume.pt", weights_only=True)
    rb = torch.load(job_b / "checkpoints" / "resume.pt", weights_only=True)
    assert (rb["step"], rb["finished"]) == (ra["step"], ra["finished"]) == (STEPS, True)
    assert (rb["best_dice"], rb["best_step"]) == (ra["best_dice"], ra["best_step"])
    assert rb["scheduler"]["last_epoch"] == ra["scheduler"]["last_epoch"] == STEPS
