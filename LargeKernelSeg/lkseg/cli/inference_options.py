"""The command-line options that choose how fast inference runs (shared by ``segment``, ``demo`` and
``evaluate``): precision and leaving out windows of air. Kept free of torch so ``lkseg --help`` stays fast;
the choices equal :data:`lkseg.utils.devices.PRECISIONS` (tested)."""

from __future__ import annotations

import argparse
from typing import Any

PRECISION_CHOICES = ("auto", "fp32", "bf16", "fp16")


def add_speed_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--precision", choices=PRECISION_CHOICES, default="auto",
                   help="auto (default): bfloat16 on CUDA and on CPUs with native bfloat16 (AVX512-BF16/AMX), "
                   "float32 elsewhere or when the model card asks for it; fp32 for labels that do not depend on "
                   "the machine")
    p.add_argument("--no-skip-air", dest="skip_empty_windows", action="store_false",
                   help="run every sliding window, also those holding nothing but the air around the body")


def speed_options(args: argparse.Namespace) -> dict[str, Any]:
    """``Segmenter`` keyword arguments from the parsed options."""
    return {"precision": args.precision, "skip_empty_windows": args.skip_empty_windows}
