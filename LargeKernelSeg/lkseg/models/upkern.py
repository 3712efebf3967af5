"""UpKern: initialise a large-kernel network from a trained small-kernel one.

From MedNeXt (Roy et al., MICCAI 2023, arXiv:2303.09975, section "UpKern"): a network that
differs from a trained one only in its depthwise kernel size (e.g. MedNeXt k5 from k3) starts
from the trained weights, with every convolution kernel whose spatial size differs trilinearly
resized to the new size (``F.interpolate(mode="trilinear", align_corners=False)``; for 3 -> 5 the
1-D profile is ``w0, 0.6 w0 + 0.4 w1, w1, 0.4 w1 + 0.6 w2, w2``). Every other tensor (biases,
norms, 1x1x1 convs, ``dummy_tensor``) is copied unchanged.

As in the official ``upkern_load_weights``, a tensor is resized when its first two dimensions
(channels) agree and only its trailing spatial dimensions differ; any other disagreement (a
missing key, other channel counts) is an error here rather than a warning, since a silently
half-initialised network would be trained by mistake.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

from lkseg.errors import LkSegError

logger = logging.getLogger(__name__)

__all__ = ["UpKernError", "upkern_state_dict", "upkern_from", "resize_kernel"]


class UpKernError(LkSegError):
    """The small-kernel weights do not fit the large-kernel network."""


def resize_kernel(kernel: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """Trilinearly resize a ``[out, in, k, k, k]`` kernel to spatial ``size`` (align_corners=False)."""
    if kernel.dim() != 5 or len(size) != 3:
        raise ValueError(f"resize_kernel needs a 5-D kernel and 3 sizes, got {tuple(kernel.shape)} and {size}")
    src = kernel.float() if not kernel.is_floating_point() else kernel
    out = F.interpolate(src, size=tuple(size), mode="trilinear", align_corners=False)
    return out.to(kernel.dtype)


def upkern_state_dict(k3_state_dict: Mapping[str, torch.Tensor], k5_model: nn.Module | Mapping[str, torch.Tensor]
                      ) -> dict[str, torch.Tensor]:
    """State dict for ``k5_model`` (a module or its state dict) built from ``k3_state_dict``.

    Raises:
        UpKernError: a key of the target is missing in the source (or the source has extra
            keys), or a tensor differs in more than its spatial kernel size.
    """
    target = k5_model.state_dict() if isinstance(k5_model, nn.Module) else k5_model
    missing = [k for k in target if k not in k3_state_dict]
    extra = [k for k in k3_state_dict if k not in target]
    if missing or extra:
        raise UpKernError(
            "UpKern: the small-kernel weights are not from the same network configuration "
            f"(missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {extra[:5]}{'...' if len(extra) > 5 else ''}); "
            "use a checkpoint of the same architecture, size and classes that differs only in kernel size")
    out: dict[str, torch.Tensor] = {}
    resized = 0
    for key, ref in target.items():
        src = k3_state_dict[key]
        if tuple(src.shape) == tuple(ref.shape):
            out[key] = src.detach().clone()
            continue
        if src.dim() == 5 and ref.dim() == 5 and src.shape[:2] == ref.shape[:2]:
            out[key] = resize_kernel(src.detach(), tuple(ref.shape[2:]))
            resized += 1
            continue
        raise UpKernError(f"UpKern: tensor {key!r} has shape {tuple(src.shape)} in the small-kernel weights but "
                          f"{tuple(ref.shape)} in the target network; only kernel sizes may differ")
    logger.info("UpKern: %d kernels resized, %d tensors copied", resized, len(out) - resized)
    return out


def upkern_from(k3_model_or_sd: nn.Module | Mapping[str, torch.Tensor], k5_model: nn.Module) -> nn.Module:
    """Load ``k5_model`` (in place, strictly) from a small-kernel model or state dict; returns it."""
    src = k3_model_or_sd.state_dict() if isinstance(k3_model_or_sd, nn.Module) else k3_model_or_sd
    k5_model.load_state_dict(upkern_state_dict(src, k5_model), strict=True)
    return k5_model
