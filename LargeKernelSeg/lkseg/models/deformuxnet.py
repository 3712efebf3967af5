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

Offset layout (``offset_layout``, see docs/deformuxnet_offsets.md): the official offset conv is
padded, so its offset map is 2 voxels larger per axis than the output, and the official CUDA
operator reads that larger buffer as if it were output-sized (and, in a batch, at an output-sized
stride per sample, so one sample's offsets partly come from another's map). ``"official"``
reproduces that reading exactly, so weights trained with the official code give its outputs;
``lkseg import`` sets it for official weights. ``"native"`` (the default, lkseg's own training)
uses an unpadded offset conv, so each output voxel uses the offsets predicted at its own
position (the paper's meaning). Parameters and state-dict shapes are the same in both layouts,
and with zero offsets (a fresh network) they give identical outputs; a card without the field
means ``"native"``.

Other deviations: the official block class does not construct as published (its ``__init__``
lacks the ``k_s`` argument it uses). The official operator is a compiled CUDA extension; ours is
pure PyTorch (``grid_sample``), or a fused Triton kernel on CUDA, with identical sampling
semantics (:mod:`lkseg.models.deform_conv`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn as nn

from lkseg.models.blocks import UXEncoder, UXNetLayout
from lkseg.models.deform_conv import DeformConvPack3d, check_offset_layout
from lkseg.models.registry import register
from lkseg.models.uxnet import UXBlock

__all__ = ["DeformUXNet", "DeformUXBlock", "OFFICIAL_IMPORT_DEFAULTS", "card_lines"]

#: hyper-parameters ``lkseg import`` assumes for official weights unless the card says otherwise:
#: official weights were trained with the padded offset conv read the official operator's way.
OFFICIAL_IMPORT_DEFAULTS = {"offset_layout": "official"}

_LAYOUT_MEANING = {
    "official": "official (padded offset conv read as the official CUDA op reads it; for weights "
                "from MASILab/deform-uxnet)",
    "native": "native (unpadded offset conv; lkseg's own training)",
}


def card_lines(hyperparameters: dict) -> list[str]:
    """Lines ``lkseg info`` adds for a DeformUX-Net card: its offset layout."""
    layout = hyperparameters.get("offset_layout")
    if layout is None:
        return [f"Offset layout:  {_LAYOUT_MEANING['native']}; the card does not say (written before the field)"]
    return [f"Offset layout:  {_LAYOUT_MEANING.get(layout, repr(layout))}"]


class DeformUXBlock(UXBlock):
    """One DeformUX-Net block: the 3D UX-Net block with its depthwise conv replaced by the
    depthwise deformable conv ``ddc`` (see the module docstring)."""

    mixer_name = "ddc"

    def __init__(self, dim: int, kernel_size: int = 3, drop_path: float = 0.0,
                 layer_scale_init_value: float = 1e-6, dense_mlp: bool = False,
                 offset_layout: str = "native") -> None:
        self._offset_layout = check_offset_layout(offset_layout)  # read by _make_mixer during __init__
        super().__init__(dim, kernel_size, drop_path, layer_scale_init_value, dense_mlp)

    def _make_mixer(self, dim: int, kernel_size: int) -> nn.Module:
        return DeformConvPack3d(dim, kernel_size=kernel_size, stride=1, padding=kernel_size // 2,
                                offset_layout=self._offset_layout)


@register(
    "deformuxnet",
    paper_config={"depths": (2, 2, 2, 2), "feat_size": (48, 96, 192, 384), "hidden_size": 768,
                  "kernel_size": 3, "drop_path_rate": 0.0, "layer_scale_init_value": 1e-6,
                  "dense_mlp": False, "offset_layout": "native"},
    description="3D DeformUX-Net: 3D UX-Net with depthwise deformable 3^3 convolutions",
    paper="Lee et al., DeformUX-Net, arXiv:2310.00199 (2023)",
    small_config={"depths": (1, 1, 1, 1), "feat_size": (8, 16, 32, 64), "hidden_size": 128},
)
class DeformUXNet(UXNetLayout):
    """3D DeformUX-Net (encoder key prefix ``deformuxnet_3d``, decoder as 3D UX-Net).

    Args:
        in_channels: input image channels.
        out_channels: classes including background.
        depths: blocks per encoder stage.
        feat_size: channels per encoder stage.
        hidden_size: channels of the bottleneck block ``encoder5``.
        kernel_size: deformable kernel size of every stage (official: 3).
        drop_path_rate: stochastic depth rate (linearly increasing over the blocks).
        layer_scale_init_value: initial layer scale ``gamma`` (0 disables it).
        dense_mlp: dense instead of grouped 1x1x1 MLP convs (see the module docstring).
        offset_layout: ``"native"`` (lkseg's training) or ``"official"`` (weights from the official
            code; see the module docstring).
        norm_name: decoder normalisation (MONAI name).
        res_block: residual decoder blocks.

    Input sides must be divisible by 16; the output has the input's spatial size.
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 14, depths: Sequence[int] = (2, 2, 2, 2),
                 feat_size: Sequence[int] = (48, 96, 192, 384), hidden_size: int = 768, kernel_size: int = 3,
                 drop_path_rate: float = 0.0, layer_scale_init_value: float = 1e-6, dense_mlp: bool = False,
                 norm_name: str | tuple = "instance", res_block: bool = True, offset_layout: str = "native") -> None:
        if len(depths) != 4 or len(feat_size) != 4:
            raise ValueError(f"depths and feat_size need 4 entries each, got {depths!r} and {feat_size!r}")
        if int(kernel_size) % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size!r}")
        offset_layout = check_offset_layout(offset_layout)

        def block(dim: int, rate: float) -> nn.Module:
            return DeformUXBlock(dim, int(kernel_size), rate, layer_scale_init_value, dense_mlp, offset_layout)

        encoder = UXEncoder(in_channels, depths, feat_size, drop_path_rate, block)
        # The official head hard-codes 48 input channels (= feat_size[0] of the paper config).
        super().__init__("deformuxnet_3d", encoder, in_channels, out_channels, feat_size, hidden_size,
                         norm_name, res_block)
        self.dense_mlp = dense_mlp
        self.offset_layout = offset_layout
        #: in the official layout the samples of a batch read each other's offsets (docs/deformuxnet_offsets.md):
        #: an output depends on its batch mates, so inference runs such a network one window at a time
        self.samples_interact = offset_layout == "official"
