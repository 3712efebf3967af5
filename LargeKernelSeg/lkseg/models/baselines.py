"""MONAI baselines registered beside the large-kernel networks, for comparison.

* SwinUNETR: A. Hatamizadeh et al., "Swin UNETR: Swin Transformers for Semantic Segmentation of
  Brain Tumors in MRI Images", BrainLes 2021 (MONAI 1.6 constructor: no ``img_size``).
* SegResNet: A. Myronenko, "3D MRI brain tumor segmentation using autoencoder regularization",
  BrainLes 2018.

Both keep MONAI's module names, so MONAI-trained state dicts load unchanged.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from monai.networks.nets import SegResNet, SwinUNETR

from lkseg.models.blocks import check_input_size
from lkseg.models.registry import register

__all__ = ["SwinUNETRBaseline", "segresnet", "swinunetr"]


class SwinUNETRBaseline(SwinUNETR):
    """MONAI ``SwinUNETR`` with a clear error for input patches it cannot take.

    Sides must be multiples of 32 (five 2x reductions) and at least 64: at 32 the bottleneck is a
    single voxel, which instance normalisation (statistics from the input, also in eval) cannot
    normalise. The registry's small configuration therefore runs 64^3 patches.
    """

    def forward(self, x_in: torch.Tensor) -> torch.Tensor:
        check_input_size(x_in, "SwinUNETR", 32, 64)
        return super().forward(x_in)


@register(
    "swinunetr",
    paper_config={"feature_size": 48},
    description="MONAI SwinUNETR baseline",
    paper="Hatamizadeh et al., Swin UNETR, BrainLes 2021",
    small_config={"feature_size": 12, "depths": (1, 1, 1, 1), "num_heads": (1, 1, 1, 1)},
)
def swinunetr(in_channels: int = 1, out_channels: int = 14, feature_size: int = 48, **kwargs) -> nn.Module:
    """MONAI ``SwinUNETR``; ``kwargs`` go to its constructor (``depths``, ``num_heads``, ...)."""
    return SwinUNETRBaseline(in_channels=in_channels, out_channels=out_channels, feature_size=feature_size,
                             **kwargs)


@register(
    "segresnet",
    paper_config={"init_filters": 32, "blocks_down": (1, 2, 2, 4), "blocks_up": (1, 1, 1)},
    description="MONAI SegResNet baseline",
    paper="Myronenko, SegResNet, BrainLes 2018",
    small_config={"init_filters": 8},
)
def segresnet(in_channels: int = 1, out_channels: int = 14, **kwargs) -> nn.Module:
    """MONAI ``SegResNet`` (input sides multiples of 8); ``kwargs`` go to its constructor."""
    return SegResNet(spatial_dims=3, in_channels=in_channels, out_channels=out_channels, **kwargs)
