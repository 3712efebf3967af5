"""MedNeXt (v1): a fully ConvNeXt 3D segmentation network.

Paper: S. Roy, G. Koehler, C. Ulrich, M. Baumgartner, J. Petersen, F. Isensee, P. F. Jaeger,
K. Maier-Hein, "MedNeXt: Transformer-driven Scaling of ConvNets for Medical Image Segmentation",
MICCAI 2023 (arXiv:2303.09975). Official code: MIC-DKFZ/MedNeXt (``mednextv1``).

Built from MONAI's MedNeXt blocks (``monai.networks.blocks.mednext_block``), which equal the
official ones, assembled with the official layout and attribute names, so that the state dict
has exactly the official keys and shapes (including ``dummy_tensor``): official weights load
with ``strict=True``. MONAI's own ``MedNeXt`` network is not used as the assembly because (a) its
keys differ (``enc_stages.0`` for ``enc_block_0`` ...) and (b) for sizes B, M and L it gives the
down-sampling block ``down_i`` the expansion ratio of stage ``i``, where the official network
uses that of stage ``i + 1`` (six weight shapes differ). For size S both are identical;
:func:`monai_to_lkseg` maps MONAI's keys onto ours (tested: identical outputs).

Configurations (``create_mednext_v1``): 32 base channels, residual blocks and residual
up/down-sampling in all sizes; ``exp_r`` and ``block_counts`` per size in :data:`CONFIGS`.

Deep supervision (``deep_supervision=True``) adds heads ``out_1`` .. ``out_4``. In training mode
the forward returns a list ``[full resolution, 1/2, 1/4, 1/8, 1/16]`` (the official order; the
official loss weights are 16, 8, 4, 2, 1 over 31); in eval mode it returns only the
full-resolution logits, so inference code never sees a list. The official network returns the
list in both modes.

``dummy_tensor`` exists only so that official checkpoints load strictly (the official code
uses it to work around a gradient-checkpointing problem); here it never receives a gradient
(``requires_grad=False``), so DDP does not see an unused trainable parameter. It still counts as
one parameter, as in the official count.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from monai.networks.blocks.mednext_block import MedNeXtBlock, MedNeXtDownBlock, MedNeXtOutBlock, MedNeXtUpBlock

from lkseg.errors import LkSegError
from lkseg.models.registry import register

logger = logging.getLogger(__name__)

__all__ = ["MedNeXt", "CONFIGS", "monai_to_lkseg", "lkseg_to_monai", "official_to_lkseg", "strip_deep_supervision"]

#: size -> (exp_r per stage, block_counts per stage), stages enc0..enc3, bottleneck, dec3..dec0
CONFIGS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "S": ((2,) * 9, (2,) * 9),
    "B": ((2, 3, 4, 4, 4, 4, 4, 3, 2), (2,) * 9),
    "M": ((2, 3, 4, 4, 4, 4, 4, 3, 2), (3, 4, 4, 4, 4, 4, 4, 4, 3)),
    "L": ((3, 4, 8, 8, 8, 8, 8, 4, 3), (3, 4, 8, 8, 8, 8, 8, 4, 3)),
}

_DS_KEY = re.compile(r"^out_[1-4]\.")


@register(
    "mednext",
    paper_config={"size": "B", "kernel_size": 3, "deep_supervision": False, "n_channels": 32},
    description="MedNeXt v1 (S/B/M/L, kernel 3 or 5, optional deep supervision); official state-dict keys",
    paper="Roy et al., MedNeXt, MICCAI 2023 (arXiv:2303.09975)",
    small_config={"size": "S", "kernel_size": 3, "n_channels": 8, "block_counts": (1,) * 9},
)
class MedNeXt(nn.Module):
    """MedNeXt v1 with the official layout and state-dict keys.

    Args:
        in_channels: input image channels.
        out_channels: classes including background.
        size: ``"S"``, ``"B"``, ``"M"`` or ``"L"`` (sets ``exp_r`` and ``block_counts``).
        kernel_size: depthwise kernel size of every block (official: 3 or 5; odd).
        deep_supervision: add the four deep-supervision heads (see the module docstring).
        n_channels: channels of the first stage (official: 32).
        exp_r: expansion ratio per stage (9 ints or one int); overrides the size's.
        block_counts: blocks per stage (9 ints); overrides the size's.
        checkpointing: gradient checkpointing of every block while training (the official
            M and L use it, ``checkpoint_style='outside_block'``); saves memory, costs time.

    Input sides must be divisible by 16.
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 14, size: str = "B", kernel_size: int = 3,
                 deep_supervision: bool = False, n_channels: int = 32, exp_r: int | Sequence[int] | None = None,
                 block_counts: Sequence[int] | None = None, checkpointing: bool = False) -> None:
        super().__init__()
        key = str(size).upper()
        if key not in CONFIGS:
            raise LkSegError(f"mednext: size must be one of S, B, M, L (got {size!r})")
        if int(kernel_size) < 1 or int(kernel_size) % 2 == 0:
            raise LkSegError(f"mednext: kernel_size must be an odd positive integer such as 3 or 5 (got {kernel_size!r})")
        default_exp, default_blocks = CONFIGS[key]
        exp = [int(exp_r)] * 9 if isinstance(exp_r, int) else list(exp_r if exp_r is not None else default_exp)
        blocks = list(block_counts if block_counts is not None else default_blocks)
        if len(exp) != 9 or len(blocks) != 9:
            raise LkSegError(f"mednext: exp_r and block_counts need 9 entries (got {exp!r} and {blocks!r})")
        self.size = key
        self.kernel_size = k = int(kernel_size)
        self.do_ds = bool(deep_supervision)
        self.checkpointing = bool(checkpointing)
        self.in_channels = in_channels
        self.out_channels = out_channels
        c = int(n_channels)

        def stage(ch: int, e: int, n: int) -> nn.Sequential:
            return nn.Sequential(*[
                MedNeXtBlock(ch, ch, expansion_ratio=e, kernel_size=k, use_residual_connection=True,
                             norm_type="group", dim="3d")
                for _ in range(n)
            ])

        self.stem = nn.Conv3d(in_channels, c, kernel_size=1)
        # Encoder: stage i at c * 2^i channels; the official down_i uses the ratio of stage i + 1.
        for i in range(4):
            setattr(self, f"enc_block_{i}", stage(c * 2 ** i, exp[i], blocks[i]))
            setattr(self, f"down_{i}", MedNeXtDownBlock(c * 2 ** i, c * 2 ** (i + 1), expansion_ratio=exp[i + 1],
                                                        kernel_size=k, use_residual_connection=True,
                                                        norm_type="group", dim="3d"))
        self.bottleneck = stage(c * 16, exp[4], blocks[4])
        # Decoder: up_i goes from c * 2^(i+1) to c * 2^i channels, with the ratio of dec_block_i.
        for i in (3, 2, 1, 0):
            s = 8 - i  # index into exp_r / block_counts
            setattr(self, f"up_{i}", MedNeXtUpBlock(c * 2 ** (i + 1), c * 2 ** i, expansion_ratio=exp[s],
                                                    kernel_size=k, use_residual_connection=True,
                                                    norm_type="group", dim="3d"))
            setattr(self, f"dec_block_{i}", stage(c * 2 ** i, exp[s], blocks[s]))
        self.out_0 = MedNeXtOutBlock(c, out_channels, dim="3d")
        self.dummy_tensor = nn.Parameter(torch.tensor([1.0]), requires_grad=False)
        if self.do_ds:
            for i in range(1, 5):
                setattr(self, f"out_{i}", MedNeXtOutBlock(c * 2 ** i, out_channels, dim="3d"))

    def _run(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.checkpointing and self.training and torch.is_grad_enabled():
            if isinstance(module, nn.Sequential):
                for block in module:
                    x = cp.checkpoint(block, x, use_reentrant=False)
                return x
            return cp.checkpoint(module, x, use_reentrant=False)
        return module(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """Logits ``[N, out_channels, D, H, W]``; with deep supervision in training mode a list
        ``[full, 1/2, 1/4, 1/8, 1/16]``."""
        x = self.stem(x)
        skips = []
        for i in range(4):
            x = self._run(getattr(self, f"enc_block_{i}"), x)
            skips.append(x)
            x = self._run(getattr(self, f"down_{i}"), x)
        x = self._run(self.bottleneck, x)
        want_ds = self.do_ds and self.training
        ds: list[torch.Tensor] = []
        if want_ds:
            ds.append(self.out_4(x))
        for i in (3, 2, 1, 0):
            x = self._run(getattr(self, f"up_{i}"), x) + skips[i]
            x = self._run(getattr(self, f"dec_block_{i}"), x)
            if want_ds and i > 0:
                ds.append(getattr(self, f"out_{i}")(x))
        x = self.out_0(x)
        if want_ds:
            return [x, *reversed(ds)]
        return x


def strip_deep_supervision(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the deep-supervision heads ``out_1`` .. ``out_4`` (official trainers always build them)."""
    return {k: v for k, v in state_dict.items() if not _DS_KEY.match(k)}


def official_to_lkseg(checkpoint: Mapping[str, Any], deep_supervision: bool = False) -> dict[str, torch.Tensor]:
    """State dict for :class:`MedNeXt` from an official MedNeXt checkpoint.

    Our keys equal the official ones, so this only unwraps what the official training leaves
    around them: an nnU-Net checkpoint dict (weights under ``"state_dict"``), a DDP ``module.``
    prefix, and, when ``deep_supervision`` is False, the deep-supervision heads.
    """
    sd = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, Mapping) else checkpoint
    if not isinstance(sd, Mapping) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise LkSegError("official MedNeXt checkpoint: expected a state dict of tensors "
                         "(or an nnU-Net checkpoint with one under 'state_dict')")
    out = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in sd.items()}
    if not deep_supervision:
        out = strip_deep_supervision(out)
    return out


def lkseg_to_official(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our keys are the official keys: a plain copy (kept for symmetry with other models)."""
    return dict(state_dict)


def monai_to_lkseg(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a ``monai.networks.nets.MedNeXt`` state dict (4 levels) to our/official keys.

    ``enc_stages.i`` -> ``enc_block_i``, ``down_blocks.i`` -> ``down_i``, ``up_blocks.i`` ->
    ``up_{3-i}``, ``dec_stages.i`` -> ``dec_block_{3-i}``, ``out_blocks.i`` -> ``out_{4-i}``; adds
    ``dummy_tensor``. Shapes are not changed: for sizes B/M/L MONAI's ``down_0``/``down_1`` have
    other expansion ratios, and such weights will not load.
    """
    out: dict[str, torch.Tensor] = {}
    for k, v in state_dict.items():
        m = re.match(r"^(enc_stages|down_blocks|up_blocks|dec_stages|out_blocks)\.(\d+)\.(.*)$", k)
        if m is None:
            out[k] = v
            continue
        kind, idx, rest = m.group(1), int(m.group(2)), m.group(3)
        name = {"enc_stages": f"enc_block_{idx}", "down_blocks": f"down_{idx}", "up_blocks": f"up_{3 - idx}",
                "dec_stages": f"dec_block_{3 - idx}", "out_blocks": f"out_{4 - idx}"}[kind]
        out[f"{name}.{rest}"] = v
    out.setdefault("dummy_tensor", torch.tensor([1.0]))
    return out


def lkseg_to_monai(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of :func:`monai_to_lkseg` (drops ``dummy_tensor``)."""
    out: dict[str, torch.Tensor] = {}
    for k, v in state_dict.items():
        if k == "dummy_tensor":
            continue
        m = re.match(r"^(enc_block|down|up|dec_block|out)_(\d+)\.(.*)$", k)
        if m is None or (m.group(1) == "out" and m.group(2) == "0"):
            out[k] = v
            continue
        kind, idx, rest = m.group(1), int(m.group(2)), m.group(3)
        name = {"enc_block": f"enc_stages.{idx}", "down": f"down_blocks.{idx}", "up": f"up_blocks.{3 - idx}",
                "dec_block": f"dec_stages.{3 - idx}", "out": f"out_blocks.{4 - idx}"}[kind]
        out[f"{name}.{rest}"] = v
    return out
