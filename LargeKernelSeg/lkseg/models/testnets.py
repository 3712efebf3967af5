"""A network whose output is known exactly, for testing geometry, inference and checkpoints.

``ThresholdNet`` ("threshold-test", hidden from ``lkseg models``) labels every voxel by the
intensity band it falls in: background where ``x < thresholds[0]``, class ``c`` (1..n) where
``thresholds[c-1] <= x < thresholds[c]`` (the last band is open-ended). It is purely
voxel-wise (no spatial mixing), so any resampling, orientation or sliding-window mistake
shows up as a label in the wrong place. Not a published network.

``EdgeNet`` ("edge-test") sees direction: class 1 marks voxels brighter (by more than
``threshold``) than their neighbour one step along the network tensor's first axis (X: toward the
patient's right after "RAS" orientation), class 2 along Y (anterior), class 3 along Z (superior),
first match wins. A voxel-wise network cannot see a flip or permutation applied the same wrong
way going in and coming out; this one can, and an off-by-one shift moves every face it marks.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from lkseg.models.registry import register

#: logit of the winning class (all others are 0), so softmax is confident and argmax exact
LOGIT = 10.0


def confident_logits(cls: torch.Tensor, out_channels: int, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Logits ``[B, C, *spatial]``: LOGIT x scale[c] for the class in ``cls`` (``[B, *spatial]``), 0 elsewhere."""
    shape = (1, out_channels) + (1,) * (cls.dim() - 1)
    channels = torch.arange(out_channels, device=cls.device).view(shape)
    onehot = (cls.unsqueeze(1) == channels).to(dtype)
    return onehot * (LOGIT * scale.to(dtype).view(shape))


@register("threshold-test", paper_config={"thresholds": [0.5]}, small_config={"thresholds": [0.5]},
          description="test network: labels voxels by intensity band (output known exactly)", hidden=True)
class ThresholdNet(nn.Module):
    """Voxel-wise intensity-band classifier with one learnable scale per output channel.

    The ``scale`` parameter (initialised to 1, shape ``[out_channels]``) keeps the state dict
    non-empty and its shape tied to the number of classes, so checkpoint code can detect a
    label table that disagrees with the weights.
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 2, thresholds: Sequence[float] = (0.5,)) -> None:
        super().__init__()
        thresholds = [float(t) for t in thresholds]
        if in_channels != 1:
            raise ValueError(f"threshold-test takes 1 input channel, got in_channels={in_channels}")
        if not thresholds:
            raise ValueError("threshold-test needs at least one threshold")
        if any(b <= a for a, b in zip(thresholds, thresholds[1:])):
            raise ValueError(f"threshold-test thresholds must increase strictly, got {thresholds}")
        if out_channels != len(thresholds) + 1:
            raise ValueError(f"threshold-test with {len(thresholds)} threshold(s) has {len(thresholds) + 1} "
                             f"classes (background included), but out_channels={out_channels}; give one threshold "
                             "per foreground label")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.register_buffer("thresholds", torch.tensor(thresholds, dtype=torch.float32), persistent=False)
        self.scale = nn.Parameter(torch.ones(out_channels))

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """Class index per voxel of ``x`` (shape ``[B, 1, *spatial]`` -> ``[B, *spatial]``, int64)."""
        v = x[:, 0].float()
        return (v.unsqueeze(-1) >= self.thresholds).sum(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return confident_logits(self.classify(x), self.out_channels, self.scale, x.dtype)


@register("edge-test", paper_config={"threshold": 0.5}, small_config={"threshold": 0.5},
          description="test network: marks faces of bright objects by direction (output known exactly)",
          hidden=True)
class EdgeNet(nn.Module):
    """Direction-sensitive face detector on the network tensor (``[B, 1, X, Y, Z]`` -> 4 classes).

    Class ``a`` (1, 2, 3) where ``x - x[one step further along axis a] > threshold``; the last voxel
    along an axis compares with itself (no face). One learnable ``scale`` per class, as in
    :class:`ThresholdNet`, keeps the state dict tied to the number of classes.
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 4, threshold: float = 0.5) -> None:
        super().__init__()
        if in_channels != 1:
            raise ValueError(f"edge-test takes 1 input channel, got in_channels={in_channels}")
        if out_channels != 4:
            raise ValueError(f"edge-test has 4 classes (background, X, Y, Z faces), but out_channels={out_channels}")
        self.in_channels, self.out_channels, self.threshold = in_channels, out_channels, float(threshold)
        self.scale = nn.Parameter(torch.ones(out_channels))

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """Class index per voxel (``[B, 1, X, Y, Z]`` -> ``[B, X, Y, Z]``, int64)."""
        v = x[:, 0].float()
        cls = torch.zeros(v.shape, dtype=torch.int64, device=v.device)
        for axis in (3, 2, 1):  # Z first so that X, written last, wins
            nxt = torch.cat([v.narrow(axis, 1, v.shape[axis] - 1), v.narrow(axis, v.shape[axis] - 1, 1)], dim=axis)
            cls[(v - nxt) > self.threshold] = axis
        return cls

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return confident_logits(self.classify(x), self.out_channels, self.scale, x.dtype)
