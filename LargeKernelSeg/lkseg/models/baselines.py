"""MONAI baselines registered beside the large-kernel networks, for comparison.

* SwinUNETR: A. Hatamizadeh et al., "Swin UNETR: Swin Transformers for Semantic Segmentation of
  Brain Tumors in MRI Images", BrainLes 2021.
* SegResNet: A. Myronenko, "3D MRI brain tumor segmentation using autoencoder regularization",
  BrainLes 2018.
"""

from __future__ import annotations

import torch.nn as nn
from monai.networks.nets import SegResNet, SwinUNETR

from lkseg.models.registry import register


@register(
    "swinunetr",
    paper_config={"feature_size": 48},
    description="MONAI SwinUNETR baseline",
    paper="Hatamizadeh et al., Swin UNETR, BrainLes 2021",
    small_config={"feature_size": 12, "depths": (1, 1, 1, 1), "num_heads": (1, 1, 1, 1)},
)
def swinunetr(in_channels: int = 1, out_channels: int = 14, feature_size: int = 48, **kwargs) -> nn.Module:
    """MONAI ``SwinUNETR`` (inputs with sides divisible by 32)."""
    return SwinUNETR(in_channels=in_channels, out_channels=out_channels, feature_size=feature_size, **kwargs)


@register(
    "segresnet",
    paper_config={"init_filters": 32, "blocks_down": (1, 2, 2, 4), "blocks_up": (1, 1, 1)},
    description="MONAI SegResNet baseline",
    paper="Myronenko, SegResNet, BrainLes 2018",
    small_config={"init_filters": 8},
)
def segresnet(in_channels: int = 1, out_channels: int = 14, **kwargs) -> nn.Module:
    """MONAI ``SegResNet``."""
    return SegResNet(spatial_dims=3, in_channels=in_channels, out_channels=out_channels, **kwargs)
