"""Fine-tuning (or training from scratch) on a local dataset; ``python -m lkseg.training``.

The loop: cases preprocessed as the model card says (:mod:`lkseg.training.crops`), random crops at
the card's ROI size biased to foreground (1:1 positive/negative), light augmentation, Dice + CE
loss (MONAI ``DiceCELoss``, softmax, one-hot labels; deep-supervision outputs weighted 1, 1/2,
1/4 ...), AdamW with linear warm-up and cosine decay, autocast on CUDA, validation Dice with
sliding-window inference every ``val_every`` steps, native checkpoints (best and last) whose
card records the parent checkpoint's SHA-256, the data and the scores.

Everything is written into the job folder ``out`` (the contract in docs/architecture.md):
``progress.jsonl``, ``checkpoints/{last,best}.safetensors``, ``checkpoints/resume.pt`` (saved
atomically every ``checkpoint_every`` steps; a rerun with the same ``out`` continues from it) and
``curves.png``. Under ``torchrun`` the same code trains with DistributedDataParallel (NCCL on
CUDA, gloo on CPU); only rank 0 writes files."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from lkseg.errors import Cancelled, LkSegError
from lkseg.training.config import TrainConfig, build_parser, config_from_args
from lkseg.training.ownership import (
    claim_out_folder,
    hold_out_folder,
    release_out_folder,
)
from lkseg.training.supervision import watch_from_env

log = logging.getLogger(__name__)


ProgressFn = Callable[[dict], None]


def train(config: TrainConfig, progress: ProgressFn | None = None, cancel: Any = None) -> Path:
    """Run (or resume) training; returns the path of the best checkpoint.

    ``progress(record)`` receives every ``progress.jsonl`` record (plus ``total_steps``);
    ``cancel`` (anything with ``is_set()``) stops the run after saving the resume state, raising
    :class:`lkseg.errors.Cancelled`.
    """
    from lkseg.training.distributed import cleanup_distributed, setup_distributed

    device = _resolve_device(config.device)
    dist_info = setup_distributed(device.type)
    try:
        claim_out_folder(config, write=dist_info.is_main)
        lock = hold_out_folder(config) if dist_info.is_main else None
        if device.type == "cuda" and dist_info.initialized:
            device = torch.device("cuda", dist_info.local_rank)
        from lkseg.training.run import Run

        try:
            return Run(config, device, dist_info, progress, cancel).run()
        finally:
            if lock is not None:
                release_out_folder(lock)
    finally:
        cleanup_distributed(dist_info)


def _resolve_device(name: str) -> torch.device:
    name = (name or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise LkSegError("--device cuda was asked for but CUDA is not available; use --device cpu")
    if name not in ("cpu", "mps") and not name.startswith("cuda"):
        raise LkSegError(f"unknown --device {name!r}: use auto, cpu, cuda or mps")
    return torch.device(name)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    try:
        best = train(config_from_args(args), cancel=watch_from_env())  # a job's trainer dies with its supervisor
    except Cancelled as exc:
        print(f"lkseg.training: {exc}", file=sys.stderr)
        return 130
    except LkSegError as exc:
        log.debug("error details", exc_info=True)
        print(f"lkseg.training: error: {exc}", file=sys.stderr)
        return 2
    print(best)
    return 0
