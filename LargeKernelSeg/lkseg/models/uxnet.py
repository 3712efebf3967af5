"""3D UX-Net.

Paper: H. H. Lee, S. Bao, Y. Huo, B. A. Landman, "3D UX-Net: A Large Kernel Volumetric ConvNet
Modernizing Hierarchical Transformer for Medical Image Segmentation", ICLR 2023.
Official code: MASILab/3DUX-Net (``networks/UXNet_3D``).

Encoder block: depthwise 7^3 conv -> LayerNorm (channels last) -> "depthwise scaling":
grouped 1x1x1 conv to 4x channels (groups = channels) -> GELU -> grouped 1x1x1 conv back ->
layer scale ``gamma`` (init 1e-6) -> residual with stochastic depth. Layout and decoder:
:mod:`lkseg.models.blocks`. The state-dict keys and shapes equal the official ones (encoder
under ``uxnet_3d``), so official ``.pth`` weights load with ``strict=True``; the paper
configuration has 53,006,510 parameters with 14 classes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
from monai.networks.layers import DropPath

from lkseg.models.blocks import LayerNorm3d, UXEncoder, UXNetLayout
from lkseg.models.depthwise import DepthwiseConv3d
from lkseg.models.registry import register

__all__ = ["UXNet", "UXBlock"]


class UXBlock(nn.Module):
    """One 3D UX-Net block (see the module docstring).

    The spatial mixer (``dwconv``, a depthwise k^3 conv) is the only part the UX-Net family
    varies: :class:`lkseg.models.deformuxnet.DeformUXBlock` swaps in a deformable conv through
    :meth:`_make_mixer`/:meth:`spatial_mix` and keeps the rest of the block.
    """

    #: attribute (and state-dict key) name of the spatial mixer
    mixer_name = "dwconv"

    def __init__(self, dim: int, kernel_size: int = 7, drop_path: float = 0.0,
                 layer_scale_init_value: float = 1e-6, dense_mlp: bool = False) -> None:
        super().__init__()
        groups = 1 if dense_mlp else dim
        setattr(self, self.mixer_name, self._make_mixer(dim, kernel_size))
        self.norm = LayerNorm3d(dim, data_format="channels_last")
        self.pwconv1 = nn.Conv3d(dim, 4 * dim, kernel_size=1, groups=groups)
        self.act = nn.GELU()
        self.pwconv2 = nn.Conv3d(4 * dim, dim, kernel_size=1, groups=groups)
        self.gamma = (nn.Parameter(torch.full((dim,), float(layer_scale_init_value)))
                      if layer_scale_init_value > 0 else None)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def _make_mixer(self, dim: int, kernel_size: int) -> nn.Module:
        # an nn.Conv3d (same keys) that runs direct or FFT, whichever is faster (lkseg.models.depthwise)
        return DepthwiseConv3d(dim, kernel_size)

    def spatial_mix(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self, self.mixer_name)(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.spatial_mix(x)
        y = self.norm(y.permute(0, 2, 3, 4, 1)).permute(0, 4, 1, 2, 3)
        y = self.pwconv2(self.act(self.pwconv1(y)))
        if self.gamma is not None:
            y = y * self.gamma.view(1, -1, 1, 1, 1)
        return x + self.drop_path(y)


@register(
    "uxnet",
    paper_config={"depths": (2, 2, 2, 2), "feat_size": (48, 96, 192, 384), "hidden_size": 768,
                  "kernel_size": 7, "drop_path_rate": 0.0, "layer_scale_init_value": 1e-6},
    description="3D UX-Net: depthwise 7^3 large-kernel blocks, UNETR-style decoder",
    paper="Lee et al., 3D UX-Net, ICLR 2023",
    small_config={"depths": (1, 1, 1, 1), "feat_size": (8, 16, 32, 64), "hidden_size": 64},
)
class UXNet(UXNetLayout):
    """3D UX-Net.

    Args:
        in_channels: input image channels.
        out_channels: classes including background.
        depths: blocks per encoder stage.
        feat_size: channels per encoder stage.
        hidden_size: channels of the bottleneck block ``encoder5``.
        drop_path_rate: stochastic depth rate, linearly increasing over the blocks.
        layer_scale_init_value: initial layer scale (0 disables it).
        kernel_size: depthwise kernel size (7 in the paper).
        norm_name: decoder normalisation (MONAI name).
        res_block: residual decoder blocks.
        spatial_dims: must be 3 (kept for the official constructor's signature).

    Input sides must be divisible by 16 (four stride-2 stages).
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 14, depths: Sequence[int] = (2, 2, 2, 2),
                 feat_size: Sequence[int] = (48, 96, 192, 384), hidden_size: int = 768,
                 drop_path_rate: float = 0.0, layer_scale_init_value: float = 1e-6, kernel_size: int = 7,
                 norm_name: str | tuple = "instance", res_block: bool = True, spatial_dims: int = 3) -> None:
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        if spatial_dims != 3:
            raise ValueError(f"3D UX-Net is volumetric: spatial_dims must be 3, got {spatial_dims}")

        def block(dim: int, rate: float) -> nn.Module:
            return UXBlock(dim, kernel_size, rate, layer_scale_init_value)

        encoder = UXEncoder(in_channels, depths, feat_size, drop_path_rate, block)
        super().__init__("uxnet_3d", encoder, in_channels, out_channels, feat_size, hidden_size,
                         norm_name, res_block)
