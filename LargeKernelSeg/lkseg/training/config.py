"""The settings of one training run and the ``python -m lkseg.training`` command line that fills them."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

from lkseg.errors import LkSegError
from lkseg.utils.argtypes import (
    fraction,
    non_negative_int,
    positive_float,
    positive_int,
)

log = logging.getLogger(__name__)


DEFAULT_STEPS = 200
#: training augmentation profiles (``lkseg.training.crops`` builds them)
AUGMENT_PROFILES = ("light", "strong")


@dataclass
class TrainConfig:
    """Settings of one training run (the command-line options of ``python -m lkseg.training``)."""

    dataset: Path
    out: Path
    checkpoint: Path | None = None          # fine-tune this checkpoint ...
    architecture: str | None = None         # ... or train this registry architecture from scratch
    labels: str | None = None               # label table (name, JSON or checkpoint) for scratch runs
    model_config: str = "paper"             # scratch: "paper" or "small" (registry small_config)
    hparams: dict = field(default_factory=dict)  # scratch: hyper-parameter overrides
    steps: int | None = None
    minutes: float | None = None
    device: str = "auto"
    val_every: int = 50
    patience: int | None = None             # early stopping: validations without a better Dice
    checkpoint_every: int = 25
    seed: int = 0
    batch_size: int = 2
    lr: float | None = None                 # default 1e-4 fine-tuning, 1e-3 from scratch
    weight_decay: float = 1e-5
    warmup_steps: int | None = None         # default min(50, 10% of the steps)
    roi: tuple[int, int, int] | None = None  # default: the card's inference ROI
    spacing: tuple[float, float, float] | None = None  # scratch: target spacing (mm)
    intensity: dict | None = None           # scratch: e.g. {"mode": "window", "a_min": -125, ...}
    val_cases: list[str] | None = None
    val_fraction: float = 0.2
    upkern_from: Path | None = None         # MedNeXt: initialise a kernel-5 net from a kernel-3 checkpoint
    amp: bool = True
    augment: bool = True
    augment_profile: str = "light"          # "light" or "strong" (elastic, gamma, noise, blur: few patients)
    deterministic: bool = False
    num_threads: int | None = None
    debug_dump_weights: bool = False
    notes: str = ""

    def __post_init__(self) -> None:
        self.dataset, self.out = Path(self.dataset), Path(self.out)
        for name in ("checkpoint", "upkern_from"):
            if getattr(self, name) is not None:
                setattr(self, name, Path(getattr(self, name)))
        if self.upkern_from is not None and self.checkpoint is None and self.architecture is None:
            self.architecture = "mednext"
        if (self.checkpoint is None) == (self.architecture is None):
            raise LkSegError("give either --checkpoint CKPT (fine-tune) or --architecture NAME (from scratch)")
        if self.steps is not None and self.minutes is not None:
            raise LkSegError("give either --steps or --minutes, not both")
        if self.steps is not None and self.steps < 1:
            raise LkSegError(f"--steps must be at least 1, got {self.steps}")
        positive = ("batch_size", "val_every", "checkpoint_every") + (("patience",) if self.patience is not None else ())
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise LkSegError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        for name in ("lr", "minutes"):
            value = getattr(self, name)
            if value is not None and not (float(value) > 0 and math.isfinite(float(value))):
                raise LkSegError(f"--{name} must be a finite number greater than 0, got {value}")
        if not 0 <= float(self.val_fraction) < 1:
            raise LkSegError(f"--val-fraction must be at least 0 and below 1, got {self.val_fraction}")
        if self.roi is not None:
            self.roi = tuple(int(r) for r in self.roi)  # type: ignore[assignment]
            if len(self.roi) != 3 or min(self.roi) < 1:
                raise LkSegError(f"--roi needs three positive sizes, got {self.roi}")
        if self.augment_profile not in AUGMENT_PROFILES:
            raise LkSegError(f"--augment-profile must be one of {', '.join(AUGMENT_PROFILES)}, "
                             f"got {self.augment_profile!r}")


# --------------------------------------------------------------------------- command line
def build_parser(prog: str = "python -m lkseg.training") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Fine-tune a checkpoint (or train from scratch) on a "
                                "local dataset. Works under torchrun (DDP). Rerunning with the same --out resumes.")
    add_training_arguments(p)
    return p


def add_training_arguments(p: argparse.ArgumentParser, require_source: bool = False) -> None:
    p.add_argument("--dataset", type=Path, required=True, help="local dataset folder (dataset.json)")
    p.add_argument("--out", type=Path, required=True, help="job folder (progress, checkpoints, curves)")
    src = p.add_mutually_exclusive_group(required=require_source)
    src.add_argument("--checkpoint", type=Path, help="checkpoint to fine-tune")
    src.add_argument("--architecture", help="registry architecture to train from scratch")
    p.add_argument("--labels", help="label table for --architecture: built-in name, JSON file or checkpoint "
                   "(default: the dataset's table)")
    p.add_argument("--model-config", choices=["paper", "small"], default="paper",
                   help="hyper-parameters for --architecture: the paper's or the registry's small one")
    p.add_argument("--hparams", type=json.loads, default={}, help="JSON hyper-parameter overrides (scratch)")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--steps", type=positive_int, help=f"optimisation steps (default {DEFAULT_STEPS})")
    length.add_argument("--minutes", type=positive_float, help="train for about this many minutes")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.add_argument("--val-every", type=positive_int, default=50, help="validate every N steps (and at the end)")
    p.add_argument("--patience", type=positive_int,
                   help="early stopping: stop when validation Dice has not improved for N validations "
                   "(the best checkpoint is kept)")
    p.add_argument("--checkpoint-every", type=positive_int, default=25, help="save resume state every N steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=positive_int, default=2, help="crops per step (per process)")
    p.add_argument("--lr", type=positive_float, help="peak learning rate (default 1e-4 fine-tune, 1e-3 scratch)")
    p.add_argument("--warmup-steps", type=non_negative_int)
    p.add_argument("--roi", type=positive_int, nargs=3, metavar=("X", "Y", "Z"), help="crop size (default: the card's ROI)")
    p.add_argument("--spacing", type=positive_float, nargs=3, help="scratch: target spacing in mm")
    p.add_argument("--intensity", type=json.loads, help="scratch: intensity normalisation as JSON")
    p.add_argument("--val-cases", nargs="+", help="case ids held out for validation")
    p.add_argument("--val-fraction", type=fraction, default=0.2,
                   help="share of the cases held out for validation when --val-cases is not given (the last "
                   "ones); 0 trains on every case and validates on them")
    p.add_argument("--upkern-from", type=Path, help="MedNeXt: kernel-3 checkpoint to initialise a kernel-5 net")
    p.add_argument("--no-amp", dest="amp", action="store_false", help="train in float32: no mixed precision (by default bfloat16/float16 on CUDA, "
                   "bfloat16 on CPUs with native bfloat16)")
    p.add_argument("--no-augment", dest="augment", action="store_false")
    p.add_argument("--augment-profile", choices=AUGMENT_PROFILES, default="light",
                   help="light: rotation, scaling, intensity scale/shift; strong: also elastic deformation, "
                   "gamma, noise and blur (for a dataset of one or a few patients). Never flips.")
    p.add_argument("--deterministic", action="store_true", help="deterministic algorithms (reproducible)")
    p.add_argument("--num-threads", type=positive_int, help="CPU threads per process")
    p.add_argument("--debug-dump-weights", action="store_true",
                   help="each rank writes the hash of its weights to OUT/debug/ (DDP checks)")
    p.add_argument("--notes", default="", help="free text for the new checkpoint's card")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {k: v for k, v in vars(args).items() if k in names}
    return TrainConfig(**values)
