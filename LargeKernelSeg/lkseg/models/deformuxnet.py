"""3D DeformUX-Net: 3D UX-Net with depthwise deformable convolutions.

Paper: H. H. Lee, Q. Liu, Q. Yang, X. Yu, S. Bao, Y. Huo, B. A. Landman, "DeformUX-Net: Exploring a
3D Foundation Backbone for Medical Image Segmentation with Depthwise Deformable Convolution",
arXiv:2310.00199 (2023). Official code: MASILab/deform-uxnet (``networks/DeformUXNet_3D``).

Layout (as the official ``DEFORMUXNET``; state-dict keys and shapes equal the official ones):

* encoder ``deformuxnet_3d``: stem 7^3 conv stride 2 + channels-first LayerNorm; three
  LayerNorm + 2^3 stride-2 conv down-samplings; four stages of blocks; a channels-first
  LayerNorm (``norm0`` .. ``norm3``) on each stage output;
* block: depthwise *deformable* k^3 conv (``ddc``; k = 3 in every stage, offsets from a
  zero-initialised 1x1x1 conv on the block input, see :mod:`lkseg.models.deform_conv`) ->
  LayerNorm (channels last, eps 1e-6) -> 1x1x1 conv to 4x channels -> GELU -> 1x1x1 conv back ->
  layer scale ``gamma`` (init 1e-6) -> residual (with optional stochastic depth);
* decoder: MONAI ``UnetrBasicBlock`` / ``UnetrUpBlock`` (instance norm, residual) and
  ``UnetOutBlock``, exactly as in 3D UX-Net.

Two MLP variants (``dense_mlp``):

* ``False`` (default, *as published*): the two 1x1x1 convs are grouped (``groups = dim``), as in
  the published repository; 52,668,758 parameters for the paper configuration with 14 classes.
* ``True``: dense 1x1x1 convs (the block of an earlier commit of the same repository);
  55,790,678 parameters, which is the 55.8M that the README/paper report. The difference
  (3,121,920) is exactly the dense-minus-grouped weight count of the eight blocks' two MLP convs.

Deviations from the official code, on purpose: the official block class does not construct as
published (its ``__init__`` lacks the ``k_s`` argument it uses); and the official offset conv
is padded, giving an offset map 2 voxels larger than the output which the CUDA operator reads
as output-sized. Here the offset conv is unpadded (same parameters), so each output voxel
uses the offsets predicted at its own position; see
:class:`lkseg.models.deform_conv.DeformConvPack3d`. The official operator is a compiled CUDA
extension; ours is pure PyTorch (``grid_sample``) with identical sampling semantics.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.networks.blocks.dynunet_block import UnetOutBlock
from monai.networks.blocks.unetr_block import UnetrBasicBlock, UnetrUpBlock
from monai.networks.layers import DropPath

from lkseg.models.deform_conv import DeformConvPack3d
from lkseg.models.registry import register

logger = logging.getLogger(__name__)

__all__ = ["DeformUXNet", "DeformUXBlock", "DeformUXNetEncoder"]


class _LayerNorm(nn.Module):
    """LayerNorm over the channel axis; ``channels_first`` takes ``[N, C, ...]`` tensors,
    ``channels_last`` takes ``[N, ..., C]`` (keys ``weight``/``bias`` as the official class)."""

    def __init__(self, channels: int, eps: float = 1e-6, data_format: str = "channels_last") -> None:
        super().__init__()
        if data_format not in ("channels_last", "channels_first"):
            raise ValueError(f"data_format must be channels_last or channels_first, got {data_format!r}")
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps
        self.data_format = data_format
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.data_format == "channels_last":
            return F.layer_norm(x, (self.channels,), self.weight, self.bias, self.eps)
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        shape = (1, self.channels) + (1,) * (x.dim() - 2)
        return self.weight.view(shape) * x + self.bias.view(shape)


class DeformUXBlock(nn.Module):
    """One DeformUX-Net block (see the module docstring)."""

    def __init__(self, dim: int, kernel_size: int = 3, drop_path: float = 0.0,
                 layer_scale_init_value: float = 1e-6, dense_mlp: bool = False) -> None:
        super().__init__()
        groups = 1 if dense_mlp else dim
        self.ddc = DeformConvPack3d(dim, kernel_size=kernel_size, stride=1, padding=kernel_size // 2)
        self.norm = _LayerNorm(dim, eps=1e-6, data_format="channels_last")
        self.pwconv1 = nn.Conv3d(dim, 4 * dim, kernel_size=1, groups=groups)
        self.act = nn.GELU()
        self.pwconv2 = nn.Conv3d(4 * dim, dim, kernel_size=1, groups=groups)
        self.gamma = (nn.Parameter(layer_scale_init_value * torch.ones(dim))
                      if layer_scale_init_value > 0 else None)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ddc(x)
        y = self.norm(y.permute(0, 2, 3, 4, 1)).permute(0, 4, 1, 2, 3)
        y = self.pwconv2(self.act(self.pwconv1(y)))
        if self.gamma is not None:
            y = y * self.gamma.view(1, -1, 1, 1, 1)
        return x + self.drop_path(y)


class DeformUXNetEncoder(nn.Module):
    """Hierarchical encoder; returns the four (normalised) stage outputs at 1/2 .. 1/16 scale."""

    def __init__(self, in_channels: int, depths: Sequence[int], dims: Sequence[int],
                 kernel_sizes: Sequence[int], drop_path_rate: float, layer_scale_init_value: float,
                 dense_mlp: bool) -> None:
        super().__init__()
        self.downsample_layers = nn.ModuleList()
        self.downsample_layers.append(nn.Sequential(
            nn.Conv3d(in_channels, dims[0], kernel_size=7, stride=2, padding=3),
            _LayerNorm(dims[0], eps=1e-6, data_format="channels_first"),
        ))
        for i in range(3):
            self.downsample_layers.append(nn.Sequential(
                _LayerNorm(dims[i], eps=1e-6, data_format="channels_first"),
                nn.Conv3d(dims[i], dims[i + 1], kernel_size=2, stride=2),
            ))
        rates = [float(r) for r in torch.linspace(0, drop_path_rate, sum(depths), device="cpu")]
        self.stages = nn.ModuleList()
        cur = 0
        for i in range(4):
            self.stages.append(nn.Sequential(*[
                DeformUXBlock(dims[i], kernel_sizes[i], rates[cur + j], layer_scale_init_value, dense_mlp)
                for j in range(depths[i])
            ]))
            cur += depths[i]
        for i in range(4):
            self.add_module(f"norm{i}", _LayerNorm(dims[i], eps=1e-6, data_format="channels_first"))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for i in range(4):
            x = self.stages[i](self.downsample_layers[i](x))
            outs.append(getattr(self, f"norm{i}")(x))
        return outs


@register(
    "deformuxnet",
    paper_config={"depths": (2, 2, 2, 2), "feat_size": (48, 96, 192, 384), "hidden_size": 768,
                  "kernel_size": 3, "drop_path_rate": 0.0, "layer_scale_init_value": 1e-6,
                  "dense_mlp": False},
    description="3D DeformUX-Net: 3D UX-Net with depthwise deformable 3^3 convolutions (pure PyTorch)",
    paper="Lee et al., DeformUX-Net, arXiv:2310.00199 (2023)",
    small_config={"depths": (1, 1, 1, 1), "feat_size": (8, 16, 32, 64), "hidden_size": 128},
)
class DeformUXNet(nn.Module):
    """3D DeformUX-Net (encoder key prefix ``deformuxnet_3d``, decoder as 3D UX-Net).

    Args:
        in_channels: input image channels.
        out_channels: classes including background.
        depths: blocks per encoder stage.
        feat_size: channels per encoder stage.
        hidden_size: channels of the bottleneck block ``encoder5``.
        kernel_size: deformable kernel size, one int or one per stage (official: 3 everywhere).
        drop_path_rate: stochastic depth rate (linearly increasing over the blocks).
        layer_scale_init_value: initial layer scale ``gamma`` (0 disables it).
        dense_mlp: dense instead of grouped 1x1x1 MLP convs (see the module docstring).
        norm_name: decoder normalisation (MONAI name).
        res_block: residual decoder blocks.
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 14, depths: Sequence[int] = (2, 2, 2, 2),
                 feat_size: Sequence[int] = (48, 96, 192, 384), hidden_size: int = 768,
                 kernel_size: int | Sequence[int] = 3, drop_path_rate: float = 0.0,
                 layer_scale_init_value: float = 1e-6, dense_mlp: bool = False,
                 norm_name: str | tuple = "instance", res_block: bool = True) -> None:
        super().__init__()
        if len(depths) != 4 or len(feat_size) != 4:
            raise ValueError(f"depths and feat_size need 4 entries each, got {depths!r} and {feat_size!r}")
        kernel_sizes = [int(kernel_size)] * 4 if isinstance(kernel_size, int) else [int(k) for k in kernel_size]
        if len(kernel_sizes) != 4 or any(k % 2 == 0 for k in kernel_sizes):
            raise ValueError(f"kernel_size must be an odd int or 4 odd ints, got {kernel_size!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        f = list(feat_size)
        self.deformuxnet_3d = DeformUXNetEncoder(in_channels, depths, f, kernel_sizes, drop_path_rate,
                                                 layer_scale_init_value, dense_mlp)

        def basic(cin: int, cout: int) -> UnetrBasicBlock:
            return UnetrBasicBlock(spatial_dims=3, in_channels=cin, out_channels=cout, kernel_size=3, stride=1,
                                   norm_name=norm_name, res_block=res_block)

        def up(cin: int, cout: int) -> UnetrUpBlock:
            return UnetrUpBlock(spatial_dims=3, in_channels=cin, out_channels=cout, kernel_size=3,
                                upsample_kernel_size=2, norm_name=norm_name, res_block=res_block)

        self.encoder1 = basic(in_channels, f[0])
        self.encoder2 = basic(f[0], f[1])
        self.encoder3 = basic(f[1], f[2])
        self.encoder4 = basic(f[2], f[3])
        self.encoder5 = basic(f[3], hidden_size)
        self.decoder5 = up(hidden_size, f[3])
        self.decoder4 = up(f[3], f[2])
        self.decoder3 = up(f[2], f[1])
        self.decoder2 = up(f[1], f[0])
        self.decoder1 = basic(f[0], f[0])
        # The official head hard-codes 48 input channels (= feat_size[0] of the paper config).
        self.out = UnetOutBlock(spatial_dims=3, in_channels=f[0], out_channels=out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, in_channels, D, H, W]`` (each side divisible by 16) -> logits ``[N, out_channels, D, H, W]``."""
        outs = self.deformuxnet_3d(x)
        enc1 = self.encoder1(x)
        enc2 = self.encoder2(outs[0])
        enc3 = self.encoder3(outs[1])
        enc4 = self.encoder4(outs[2])
        hidden = self.encoder5(outs[3])
        dec3 = self.decoder5(hidden, enc4)
        dec2 = self.decoder4(dec3, enc3)
        dec1 = self.decoder3(dec2, enc2)
        dec0 = self.decoder2(dec1, enc1)
        return self.out(self.decoder1(dec0))
