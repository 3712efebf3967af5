"""Choosing the compute device and its mixed-precision setting."""

from __future__ import annotations

import contextlib
import logging

import torch

from lkseg.errors import LkSegError

log = logging.getLogger(__name__)

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"``: CUDA when available, then Apple MPS, else CPU; explicit names are checked."""
    if isinstance(device, torch.device):
        name = device.type
    else:
        name = str(device).strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    base = name.split(":")[0]
    if base == "cuda":
        if not torch.cuda.is_available():
            raise LkSegError("--device cuda was asked for but no CUDA GPU is available; use --device auto or cpu")
        return torch.device(name if isinstance(device, str) else device)
    if base == "mps":
        if not mps_available():
            raise LkSegError("--device mps was asked for but Apple MPS is not available; use --device auto or cpu")
        return torch.device("mps")
    if base == "cpu":
        return torch.device("cpu")
    raise LkSegError(f"unknown device {device!r}; use one of {', '.join(DEVICE_CHOICES)}")


#: ``--precision`` choices for inference; "auto" picks per device (:func:`inference_dtype`)
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def inference_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The reduced precision inference autocasts to on ``device``, or None for float32.

    ``auto``: CUDA bfloat16 where supported, else float16; a CPU with native bfloat16 (AVX512-BF16 or
    AMX, :func:`cpu_bf16_supported`) bfloat16; float32 elsewhere (other CPUs, Apple MPS). ``fp16`` is
    refused on the CPU, where it is emulated and slower than float32.
    """
    if precision not in PRECISIONS:
        raise LkSegError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return None
    if precision == "fp16":
        if device.type == "cpu":
            raise LkSegError("float16 inference needs a GPU (on the CPU it is emulated and slower than float32); "
                             "use --precision bf16 or fp32")
        return torch.float16
    if precision == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise LkSegError("this GPU has no bfloat16; use --precision fp16 or fp32")
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_bf16_supported():
        return torch.bfloat16
    return None


def precision_name(dtype: torch.dtype | None) -> str:
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Autocast to ``dtype`` on ``device``; a no-op for None (float32)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def cpu_bf16_supported() -> bool:
    """True when oneDNN runs bfloat16 natively on this CPU (AVX512-BF16 or AMX), where it pays."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def training_autocast_dtype(device: torch.device, enabled: bool = True) -> torch.dtype | None:
    """The mixed-precision type training uses on ``device``, or None for float32.

    CUDA: bfloat16 where supported, else float16 (with a gradient scaler). CPU: bfloat16 when the
    CPU has native bfloat16 (measured on this project's 2-core AMX machine: small SegResNet and 3D
    UX-Net training steps 2.1-2.4x faster, see docs/accuracy.md); float32 on other CPUs and on MPS.
    The loss is computed in float32 either way.
    """
    if not enabled:
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_bf16_supported():
        return torch.bfloat16
    return None
