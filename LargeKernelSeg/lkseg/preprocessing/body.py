"""The body on the network grid, so that sliding-window inference can leave out windows that hold
nothing but the air around it (:meth:`lkseg.inference.sliding_window.SlidingWindow.run`'s ``region``).

The body is found on the resampled image *before* intensity normalisation (a CT window clips air and
fat to the same value):

- CT (the card's modality starts with "CT"): voxels above :data:`CT_BODY_HU` (-500 HU: air is about
  -1000, fat about -100);
- anything else (MR, unknown): voxels above :data:`RELATIVE_LEVEL` of the way from the image's minimum
  to its 99th percentile, well above the noise of the air around the body (a noisier background only
  makes the body larger, so fewer windows are left out, never more).

What lies *inside* the body but below the threshold (lungs at about -850 HU, bowel gas) must not be
left out: within each axial slice the body is filled to its outline, every voxel between the first and
the last body voxel of its row *and* of its column (an in-plane hull; lungs and gas are enclosed by the
body wall in both directions). Not along the body axis: a scan that starts inside the lungs has no body
voxel above them. The result is grown by ``margin`` voxels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: CT body threshold in HU
CT_BODY_HU = -500.0
#: non-CT body threshold: this fraction of the range from the minimum to the 99th percentile
RELATIVE_LEVEL = 0.05
#: voxels sampled for the percentile (torch.quantile's input limit is 16M)
_SAMPLE = 1_000_000


def body_threshold(x: torch.Tensor, modality: str = "") -> float:
    """The intensity above which a voxel of ``x`` (raw values, before normalisation) counts as body."""
    if modality.split()[:1] == ["CT"]:
        return CT_BODY_HU
    flat = x.reshape(-1)
    sample = flat[::max(1, flat.numel() // _SAMPLE)].float()
    lo = float(sample.min())
    hi = float(torch.quantile(sample, 0.99))
    return lo + RELATIVE_LEVEL * (hi - lo)


def _between(mask: torch.Tensor, dim: int) -> torch.Tensor:
    """Voxels with a ``mask`` voxel at or before them and at or after them along ``dim``."""
    m = mask.to(torch.uint8)
    before = m.cummax(dim).values
    after = m.flip(dim).cummax(dim).values.flip(dim)
    return (before & after).bool()


def body_mask(x: torch.Tensor, modality: str = "", axial_axis: int = 2, margin: int = 2) -> torch.Tensor | None:
    """The body of ``x`` [1, 1, X, Y, Z] (raw intensities) as a bool [X, Y, Z] mask, filled within each
    slice across ``axial_axis`` (the array axis along the body: Z for the "RAS" network grid) and grown
    by ``margin`` voxels; None when no voxel is above the threshold (then nothing should be left out)."""
    above = x[0, 0] > body_threshold(x, modality)
    if not bool(above.any()):
        return None
    in_plane = [d for d in range(3) if d != axial_axis]
    body = _between(above, in_plane[0]) & _between(above, in_plane[1])
    if margin > 0:
        grown = F.max_pool3d(body[None, None].to(torch.float16 if body.is_cuda else torch.float32),
                             2 * margin + 1, stride=1, padding=margin)
        body = grown[0, 0] > 0
    return body
