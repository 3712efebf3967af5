"""Helpers of the training loop: DDP set-up, learning-rate schedule, resume state, progress
log, curves plot, Dice scores and deep-supervision loss.

Kept apart from :mod:`lkseg.training` so each piece stays small and testable on its own."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from lkseg.errors import LkSegError
from lkseg.utils.atomic import atomic_path, atomic_write_text

log = logging.getLogger(__name__)


def state_dict_sha256(state: dict[str, torch.Tensor]) -> str:
    """Hash of a state dict's names, shapes and values (identical weights -> identical hash)."""
    h = hashlib.sha256()
    for k in sorted(state):
        t = state[k].detach().cpu().contiguous()
        h.update(k.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()


# --------------------------------------------------------------------------- schedule
def warmup_cosine(total_steps: Callable[[], int], warmup: int, floor: float = 0.01) -> Callable[[int], float]:
    """LR factor: linear warm-up over ``warmup`` steps, then cosine decay to ``floor``.

    ``total_steps`` is a callable so that a time-limited run can fix its length once it has
    measured its speed.
    """

    def factor(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        total = max(total_steps(), warmup + 1)
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


# --------------------------------------------------------------------------- atomic files
def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` atomically: a reader sees the old file or the new one, never half of one."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_resume(path: Path) -> dict | None:
    """The resume state at ``path`` (``torch.load(weights_only=True)``), or None if there is none.

    Writes are atomic, so a damaged file means something outside lkseg broke it: it is refused
    with a clear message rather than silently restarting (and overwriting) the run.
    """
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise LkSegError(f"the resume state {path} is unreadable ({str(exc).splitlines()[0][:200]}); delete it to "
                         "start the run over, or use a new --out folder") from None
    if not isinstance(state, dict) or "step" not in state or "model" not in state:
        raise LkSegError(f"{path} is not an lkseg resume state; delete it or use a new --out folder")
    return state


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        with contextlib.suppress(Exception):
            torch.cuda.set_rng_state_all(state["cuda"])


# --------------------------------------------------------------------------- progress log
class ProgressLog:
    """``progress.jsonl``: one JSON object per line, appended and flushed line by line."""

    def __init__(self, path: Path, enabled: bool = True) -> None:
        self.path = path
        self.enabled = enabled
        self.history: list[dict] = []

    def restore(self, up_to_step: int) -> None:
        """Keep the lines of steps <= ``up_to_step`` (drop lines past a resume point and any
        half-written last line), rewriting the file atomically."""
        kept: list[dict] = []
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if rec.get("event") == "done" or not isinstance(rec.get("step"), int):
                    continue
                if rec["step"] <= up_to_step:
                    kept.append(rec)
        self.history = kept
        if self.enabled:
            atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))

    def write(self, record: dict) -> None:
        self.history.append(record)
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
            fh.flush()


def plot_curves(history: list[dict], path: Path) -> None:
    """Loss and validation Dice against step, as a PNG (matplotlib Agg), written atomically."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    steps = [r["step"] for r in history if r.get("loss") is not None]
    losses = [r["loss"] for r in history if r.get("loss") is not None]
    val = [(r["step"], r["val_dice"]) for r in history if r.get("val_dice") is not None]
    fig = Figure(figsize=(8, 3.2), dpi=100)
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(steps, losses, lw=1, color="tab:blue")
    ax1.set_xlabel("step")
    ax1.set_ylabel("training loss (Dice + CE)")
    ax1.grid(alpha=0.3)
    if val:
        ax2.plot([v[0] for v in val], [v[1] for v in val], "o-", color="tab:green")
    ax2.set_ylim(0, 1)
    ax2.set_xlabel("step")
    ax2.set_ylabel("validation mean Dice")
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


# --------------------------------------------------------------------------- metrics and loss
def dice_per_label(pred: np.ndarray, ref: np.ndarray, values: list[int]) -> dict[int, float | None]:
    """Dice of each label value; None where the label is absent from both maps."""
    out: dict[int, float | None] = {}
    for v in values:
        a, b = pred == v, ref == v
        denom = int(a.sum()) + int(b.sum())
        out[v] = None if denom == 0 else 2.0 * int(np.logical_and(a, b).sum()) / denom
    return out


def deep_supervision_loss(loss_fn: Callable, outputs: Any, target: torch.Tensor) -> torch.Tensor:
    """Loss of a single output, or the weighted sum over deep-supervision outputs.

    Weights halve at each lower resolution (normalised to sum to 1, as nnU-Net/MedNeXt do); the
    label map is downsampled with nearest neighbour to each output's size.
    """
    if isinstance(outputs, torch.Tensor):
        return loss_fn(outputs, target)
    outputs = list(outputs)
    weights = np.array([1.0 / (2**i) for i in range(len(outputs))])
    weights = weights / weights.sum()
    total = outputs[0].new_zeros(())
    for w, out in zip(weights, outputs):
        tgt = target if out.shape[2:] == target.shape[2:] else F.interpolate(
            target.float(), size=out.shape[2:], mode="nearest")
        total = total + float(w) * loss_fn(out, tgt)
    return total


def main_output(outputs: Any) -> torch.Tensor:
    """The full-resolution output of a network that may return deep-supervision outputs."""
    return outputs if isinstance(outputs, torch.Tensor) else outputs[0]


class Timer:
    """Exponential moving average of the step time, for the ETA."""

    def __init__(self) -> None:
        self.avg: float | None = None
        self._t = time.perf_counter()

    def tick(self) -> float:
        now = time.perf_counter()
        dt, self._t = now - self._t, now
        self.avg = dt if self.avg is None else 0.9 * self.avg + 0.1 * dt
        return dt

    def reset(self) -> None:
        self._t = time.perf_counter()


class TimeBudget:
    """The length of a ``--minutes`` run: fixed after 3 steps, and measured again after
    :attr:`REFINE_STEPS` more, since the first steps are slow (allocation, kernel choice) and a
    length from them alone ended runs minutes early. The learning-rate schedule follows it."""

    FIRST_STEPS = 3
    REFINE_STEPS = 20

    def __init__(self, minutes: float) -> None:
        self.seconds = float(minutes) * 60.0
        self._fixed: tuple[int, float] | None = None  # (step, elapsed) when the length was first fixed

    def length(self, done: int, step: int, elapsed: float, step_avg: float | None) -> int | None:
        """The run's new total step count after ``done`` steps of this process (at global ``step``,
        ``elapsed`` seconds into the run), or None when it is not the time to set it."""
        if done == self.FIRST_STEPS and self._fixed is None:
            self._fixed = (step, elapsed)
            per_step = step_avg
        elif self._fixed is not None and self._fixed[0] >= 0 and step == self._fixed[0] + self.REFINE_STEPS:
            per_step = (elapsed - self._fixed[1]) / self.REFINE_STEPS
            self._fixed = (-1, 0.0)  # both measurements taken
        else:
            return None
        per_step = max(per_step or 1.0, 1e-6)
        total = step + max(1, int(0.95 * (self.seconds - elapsed) / per_step))
        log.info("--minutes %.1f: about %.2f s/step, training for %d steps", self.seconds / 60, per_step, total)
        return total


# --------------------------------------------------------------------------- model set-up
def unfold_repuxnet(model: torch.nn.Module, card: Any) -> Any:
    """RepUX-Net trains with its Bayesian frequency re-parameterization (effective kernel =
    raw weight x BFM, see :mod:`lkseg.models.repuxnet`). A folded (``deploy``) checkpoint holds
    effective weights; they are divided by the BFM (strictly positive) so that training starts
    from the same function and the new checkpoint holds raw weights with ``deploy=False``, as
    the module documents."""
    folded = [m for m in model.modules() if hasattr(m, "bfm") and getattr(m, "deploy", False)]
    if not folded:
        return card
    with torch.no_grad():
        for m in folded:
            m.dwconv.weight.div_(m.bfm.to(m.dwconv.weight.dtype))
            m.deploy = False
    log.info("RepUX-Net: unfolded %d deploy-mode blocks to train with the re-parameterization", len(folded))
    return dataclasses.replace(card, hyperparameters={**card.hyperparameters, "deploy": False})


def float_outputs(outputs: Any) -> Any:
    if isinstance(outputs, torch.Tensor):
        return outputs.float()
    return [o.float() for o in outputs]
