"""Building blocks shared by the UX-Net family (3D UX-Net, RepUX-Net).

The family shares one layout (Lee et al., ICLR 2023): a hierarchical encoder of four stages
(stem 7^3 conv stride 2 + channels-first LayerNorm, then LayerNorm + 2^3 stride-2 conv
down-sampling, a channels-first LayerNorm on every stage output) and a MONAI UNETR-style
decoder (``UnetrBasicBlock`` / ``UnetrUpBlock`` with instance norm and residual blocks, and
``UnetOutBlock``). Only the encoder block differs between the networks. State-dict keys
follow the official repositories: the encoder under a network-specific prefix
(``uxnet_3d``, ``repuxnet_3d``), the decoder at the top level.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.networks.blocks.dynunet_block import UnetOutBlock
from monai.networks.blocks.unetr_block import UnetrBasicBlock, UnetrUpBlock

from lkseg.errors import LkSegError

__all__ = ["InputSizeError", "LayerNorm3d", "UXEncoder", "UXNetLayout", "check_input_size"]


class InputSizeError(LkSegError, ValueError):
    """An input patch whose size the network cannot take (e.g. a training ROI not divisible by 16)."""


def check_input_size(x: torch.Tensor, network: str, divisor: int, min_side: int = 0) -> None:
    """Raise :class:`InputSizeError` unless every spatial side of ``x`` (``[N, C, *spatial]``) is a
    multiple of ``divisor`` and at least ``min_side``; the message says which patch sizes work."""
    sides = tuple(int(s) for s in x.shape[2:])
    least = max(divisor, min_side)
    if any(s % divisor or s < least for s in sides):
        size = "x".join(str(s) for s in sides)
        fit = "x".join(str(max(least, -(-s // divisor) * divisor)) for s in sides)
        raise InputSizeError(
            f"{network} cannot take a {size} input patch: every side must be a multiple of {divisor}"
            + (f" and at least {min_side}" if min_side > divisor else "")
            + f"; choose a patch/ROI size such as {fit} (--roi / inference.roi_size)")


class LayerNorm3d(nn.Module):
    """LayerNorm over channels for ``[N, C, D, H, W]`` (``channels_first``) or
    ``[N, D, H, W, C]`` (``channels_last``) tensors; parameters ``weight`` and ``bias``."""

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
        return self.weight.view(1, -1, 1, 1, 1) * x + self.bias.view(1, -1, 1, 1, 1)


#: ``block_factory(dim, drop_path_rate)`` builds one encoder block
BlockFactory = Callable[[int, float], nn.Module]


class UXEncoder(nn.Module):
    """Hierarchical 4-stage encoder; returns the normalised stage outputs at 1/2 .. 1/16 scale."""

    def __init__(self, in_channels: int, depths: Sequence[int], dims: Sequence[int],
                 drop_path_rate: float, block_factory: BlockFactory) -> None:
        super().__init__()
        self.downsample_layers = nn.ModuleList([nn.Sequential(
            nn.Conv3d(in_channels, dims[0], kernel_size=7, stride=2, padding=3),
            LayerNorm3d(dims[0], data_format="channels_first"),
        )])
        for i in range(3):
            self.downsample_layers.append(nn.Sequential(
                LayerNorm3d(dims[i], data_format="channels_first"),
                nn.Conv3d(dims[i], dims[i + 1], kernel_size=2, stride=2),
            ))
        rates = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()
        self.stages = nn.ModuleList()
        cur = 0
        for i in range(4):
            self.stages.append(nn.Sequential(*[block_factory(dims[i], rates[cur + j]) for j in range(depths[i])]))
            cur += depths[i]
        for i in range(4):
            self.add_module(f"norm{i}", LayerNorm3d(dims[i], data_format="channels_first"))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for i in range(4):
            x = self.stages[i](self.downsample_layers[i](x))
            outs.append(getattr(self, f"norm{i}")(x))
        return outs


class UXNetLayout(nn.Module):
    """Encoder (stored under ``encoder_name``) plus the UNETR-style decoder of 3D UX-Net.

    Input sides must be divisible by 16; the output has the input's spatial size.
    """

    def __init__(self, encoder_name: str, encoder: UXEncoder, in_channels: int, out_channels: int,
                 feat_size: Sequence[int], hidden_size: int, norm_name: str | tuple, res_block: bool) -> None:
        super().__init__()
        if len(feat_size) != 4:
            raise ValueError(f"feat_size needs 4 entries, got {feat_size!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self._encoder_name = encoder_name
        self.add_module(encoder_name, encoder)
        f = list(feat_size)

        def basic(cin: int, cout: int) -> UnetrBasicBlock:
            return UnetrBasicBlock(spatial_dims=3, in_channels=cin, out_channels=cout, kernel_size=3,
                                   stride=1, norm_name=norm_name, res_block=res_block)

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
        self.out = UnetOutBlock(spatial_dims=3, in_channels=f[0], out_channels=out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, in_channels, D, H, W]`` -> logits ``[N, out_channels, D, H, W]``."""
        check_input_size(x, type(self).__name__, 16)
        outs = getattr(self, self._encoder_name)(x)
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
