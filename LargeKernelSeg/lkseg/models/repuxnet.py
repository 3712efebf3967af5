"""RepUX-Net: 3D UX-Net layout with 21^3 depthwise kernels and Bayesian frequency re-parameterization.

Paper: H. H. Lee, Q. Liu, S. Bao, Q. Yang, X. Yu, L. W. Cai, T. Li, Y. Huo, X. Koutsoukos,
B. A. Landman, "Scaling Up 3D Kernels with Bayesian Frequency Re-parameterization for Medical
Image Segmentation", MICCAI 2023. Official code: MASILab/deform-uxnet (``networks/RepUXNet_3D``).

Encoder block: depthwise k^3 conv (k = 21) -> BatchNorm3d -> GELU (no MLP, no residual).

Bayesian frequency matrix (BFM): for each kernel element, ``alpha / (d + alpha)`` with ``d``
the Euclidean distance of the element from the kernel centre (alpha = 1 in the paper). It
is a per-element prior that damps the far taps of the large kernel.

How the weights are used — this decides what a checkpoint holds:

* The stored parameter ``dwconv.weight`` is the *raw* weight ``w``. In both training and
  evaluation (unless folded) the convolution uses the effective weight ``w * BFM``. This is
  a true re-parameterization: the optimizer updates ``w``; the scaling never compounds.
  (The official forward multiplies the stored weight by the BFM and re-wraps it as a new
  Parameter on every call, so the scaling compounds and the kernels never train; see
  ../shared/reference/NOTES.md. We implement the paper's intent.)
* :meth:`RepUXNet.fold` bakes ``w * BFM`` into plain depthwise convs (``deploy`` mode, the
  official inference form: weights used as they are). A folded model's state dict therefore
  holds effective weights and must be loaded with ``deploy=True``; checkpoints written by our
  training hold raw weights and ``deploy=False`` (the default).
* Official ``.pth`` files (``torch.save(model.state_dict())``) hold the kernels exactly as the
  official network last convolved with them (its forward stores ``w * BFM`` and convolves with
  it), so they are effective weights whatever mode they were trained in: import them with
  ``deploy=True`` (``lkseg import ... --hp deploy=true``). Loading them with ``deploy=False``
  would apply the BFM once more.

The BFM is a non-persistent buffer, so the state-dict keys equal the official ones
(65,828,270 parameters with 14 classes).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn as nn

from lkseg.models.blocks import UXEncoder, UXNetLayout
from lkseg.models.depthwise import depthwise_conv_bn_gelu
from lkseg.models.registry import register

__all__ = ["RepUXNet", "RepUXBlock", "bayesian_frequency_matrix"]

#: hyper-parameters ``lkseg import`` assumes for official weights unless the card says otherwise:
#: official checkpoints hold the weights the network last convolved with (deploy form).
OFFICIAL_IMPORT_DEFAULTS = {"deploy": True}


def bayesian_frequency_matrix(kernel_size: int, alpha: float = 1.0) -> torch.Tensor:
    """``[k, k, k]`` tensor of ``alpha / (d + alpha)``, d the distance to the kernel centre."""
    if alpha <= 0:
        raise ValueError(f"alpha must be positive, got {alpha}")
    # numpy, then one factory call: tensor arithmetic under a meta-device context (the card checks build
    # networks there) would import torch._dynamo, a second more on every `lkseg` command
    r = np.arange(kernel_size, dtype=np.float64) - kernel_size // 2
    d = np.sqrt(r.reshape(-1, 1, 1) ** 2 + r.reshape(1, -1, 1) ** 2 + r.reshape(1, 1, -1) ** 2)
    return torch.tensor(alpha / (d + alpha), dtype=torch.float32)


class RepUXBlock(nn.Module):
    """Depthwise k^3 conv (re-parameterized by the BFM) -> BatchNorm3d -> GELU."""

    def __init__(self, dim: int, kernel_size: int = 21, alpha: float = 1.0, deploy: bool = False) -> None:
        super().__init__()
        self.dwconv = nn.Conv3d(dim, dim, kernel_size=kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = nn.BatchNorm3d(dim)
        self.act = nn.GELU()
        self.deploy = deploy
        self.register_buffer("bfm", bayesian_frequency_matrix(kernel_size, alpha), persistent=False)

    def effective_weight(self) -> torch.Tensor:
        w = self.dwconv.weight
        return w if self.deploy else w * self.bfm.to(dtype=w.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # direct, FFT or Triton, whichever is fastest for this shape (lkseg.models.depthwise); all equal
        # F.conv3d. On the Triton path in eval mode without gradients, BatchNorm and GELU run in the conv's kernel.
        return depthwise_conv_bn_gelu(x, self.effective_weight(), self.dwconv.bias, self.norm, self.act)

    @torch.no_grad()
    def fold(self) -> None:
        """Bake the BFM into ``dwconv.weight`` (deploy mode); a no-op when already folded."""
        if not self.deploy:
            self.dwconv.weight.copy_(self.effective_weight())
            self.deploy = True


@register(
    "repuxnet",
    paper_config={"depths": (2, 2, 2, 2), "feat_size": (48, 96, 192, 384), "hidden_size": 768,
                  "kernel_size": 21, "alpha": 1.0, "deploy": False},
    description="RepUX-Net: 21^3 depthwise kernels with Bayesian frequency re-parameterization",
    paper="Lee et al., RepUX-Net (Scaling Up 3D Kernels with Bayesian Frequency Re-parameterization), MICCAI 2023",
    small_config={"depths": (1, 1, 1, 1), "feat_size": (8, 16, 32, 64), "hidden_size": 64, "kernel_size": 7},
)
class RepUXNet(UXNetLayout):
    """RepUX-Net (see the module docstring for which weights a state dict holds).

    Args:
        in_channels: input image channels.
        out_channels: classes including background.
        depths: blocks per encoder stage.
        feat_size: channels per encoder stage.
        hidden_size: channels of the bottleneck block ``encoder5``.
        kernel_size: depthwise kernel size (21 in the paper).
        alpha: BFM strength (1 in the paper).
        deploy: weights are already folded (use them as they are).
        norm_name: decoder normalisation (MONAI name).
        res_block: residual decoder blocks.
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 14, depths: Sequence[int] = (2, 2, 2, 2),
                 feat_size: Sequence[int] = (48, 96, 192, 384), hidden_size: int = 768, kernel_size: int = 21,
                 alpha: float = 1.0, deploy: bool = False, norm_name: str | tuple = "instance",
                 res_block: bool = True) -> None:
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")

        def block(dim: int, rate: float) -> nn.Module:
            return RepUXBlock(dim, kernel_size, alpha, deploy)

        # RepUX blocks have no stochastic depth (no residual), so the rate is unused.
        encoder = UXEncoder(in_channels, depths, feat_size, 0.0, block)
        super().__init__("repuxnet_3d", encoder, in_channels, out_channels, feat_size, hidden_size,
                         norm_name, res_block)

    @torch.no_grad()
    def fold(self) -> "RepUXNet":
        """Fold every block's BFM into its conv weights (for inference/export); returns self."""
        for m in self.modules():
            if isinstance(m, RepUXBlock):
                m.fold()
        return self
