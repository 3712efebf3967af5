"""Preprocessing as a model card says, and the exact way back onto the input grid.

The network sees the image on a *network grid*: the input's voxel axes permuted and flipped so
that they point closest to the card's orientation (``"RAS"``: i -> right, j -> anterior,
k -> superior; for oblique direction matrices the closest axis assignment is chosen, as MONAI's
``Orientation`` does), with the card's target spacing, centred on the input's extent so that it
covers every input voxel. The network tensor is laid out as MONAI's (and the official
repositories') pipelines lay it out: ``(1, 1, X, Y, Z)`` with X along the first orientation letter,
so weights trained there see the same axes here, and the card's ROI size is in that order. Every resampling in this module is done by physical coordinates: for
each voxel centre of the destination grid, its continuous index in the source grid
(``inv(source ijk->LPS) @ destination ijk->LPS``) feeds trilinear interpolation
(``torch.nn.functional.grid_sample`` with ``align_corners=True``, so normalised -1/+1 are the first
and last voxel *centres*). The same mapping, inverted, brings class probabilities back onto the
input grid before the argmax, so labels land on the exact input voxels whatever the input's
orientation, spacing, origin or direction matrix. The work runs on the device of the tensors
(GPU when there is one), in slabs along k to bound memory."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from lkseg.errors import LkSegError
from lkseg.io.image import Image
from lkseg.io.orientation import orientation_axes

log = logging.getLogger(__name__)


#: destination voxels resampled per slab (bounds the size of the sampling grid)
SLAB_VOXELS = 8_000_000


@dataclass
class Grid:
    """A voxel grid: ``shape`` in array order (k, j, i) and its 4x4 ijk -> LPS matrix."""

    shape: tuple[int, int, int]
    matrix: np.ndarray

    @classmethod
    def of(cls, image: Image) -> "Grid":
        return cls(tuple(int(s) for s in image.array.shape), image.ijk_to_lps())

    @property
    def spacing(self) -> tuple[float, float, float]:
        return tuple(float(s) for s in np.linalg.norm(self.matrix[:3, :3], axis=0))

    def image(self, array: np.ndarray) -> Image:
        """An :class:`Image` holding ``array`` on this grid."""
        return Image.from_ijk_to_lps(array, self.matrix)


def network_grid(source: Grid, orientation: str | None = "RAS",
                 spacing: tuple[float, float, float] | None = None) -> Grid:
    """The grid the network sees: oriented axes, target spacing, centred over the input's extent.

    Its array is in MONAI's (X, Y, Z) layout: array axis 0 follows the orientation's first letter
    (R in ``"RAS"``), axis 2 the last; ``spacing`` and the card's ROI are in that (X, Y, Z) order.
    """
    lin = source.matrix[:3, :3]
    src_spacing = np.array(source.spacing)
    direction = lin / src_spacing
    size_ijk = np.array(source.shape[::-1], dtype=np.float64)
    perm, signs = orientation_axes(direction, orientation) if orientation else ((0, 1, 2), (1, 1, 1))
    new_dir = np.stack([signs[a] * direction[:, perm[a]] for a in range(3)], axis=1)
    extent = np.array([(size_ijk[perm[a]] - 1) * src_spacing[perm[a]] for a in range(3)])
    target = np.array(spacing if spacing is not None else [src_spacing[perm[a]] for a in range(3)], dtype=np.float64)
    if target.shape != (3,) or np.any(target <= 0):
        raise LkSegError(f"the model card's target spacing {spacing} must be three positive numbers (mm)")
    n = np.maximum(1, np.ceil(extent / target - 1e-6).astype(int) + 1)
    # the physical centre of the input's voxel box, and the new grid centred on it
    centre = source.matrix @ np.append((size_ijk - 1) / 2.0, 1.0)
    origin = centre[:3] - new_dir @ (target * (n - 1) / 2.0)
    # MONAI layout: numpy axis 0 of the network array runs along the first oriented axis (R for
    # "RAS"), as after MONAI's Orientation on a channel-first (X, Y, Z) tensor. In Grid terms
    # (array [k, j, i]) the grid's k axis is the first oriented axis, so the columns are reversed.
    m = np.eye(4)
    m[:3, :3] = (new_dir * target)[:, ::-1]
    m[:3, 3] = origin
    return Grid((int(n[0]), int(n[1]), int(n[2])), m)


def resample(volume: torch.Tensor, source: Grid, dest: Grid, mode: str = "bilinear",
             padding: str = "border", out: torch.Tensor | None = None,
             slab_voxels: int = SLAB_VOXELS) -> torch.Tensor:
    """Resample ``volume`` (1, C, D, H, W on ``source``) onto ``dest`` by physical coordinates.

    Trilinear (``mode="bilinear"`` in torch's 5D naming) or ``"nearest"``. Computed in slabs
    along k on ``volume``'s device; ``out`` may be a preallocated (1, C, *dest.shape) tensor,
    for instance on the CPU when device memory is short.
    """
    if volume.ndim != 5:
        raise ValueError(f"expected a (1, C, D, H, W) tensor, got shape {tuple(volume.shape)}")
    device = volume.device
    c = volume.shape[1]
    dk, dj, di = dest.shape
    if out is None:
        out = torch.empty((1, c, dk, dj, di), dtype=volume.dtype, device=device)
    theta = _normalised_affine(source, dest)
    t = torch.as_tensor(theta, dtype=torch.float32, device=device)
    ii = torch.arange(di, dtype=torch.float32, device=device)
    jj = torch.arange(dj, dtype=torch.float32, device=device)
    per_slice = max(1, di * dj)
    step = max(1, slab_voxels // per_slice)
    for k0 in range(0, dk, step):
        k1 = min(dk, k0 + step)
        kk = torch.arange(k0, k1, dtype=torch.float32, device=device)
        # coords[..., (i, j, k)] for each destination voxel of the slab, then the affine map
        zz, yy, xx = torch.meshgrid(kk, jj, ii, indexing="ij")
        pts = torch.stack((xx, yy, zz), dim=-1)
        grid = pts @ t[:3, :3].T + t[:3, 3]
        res = F.grid_sample(volume, grid.unsqueeze(0), mode=mode, padding_mode=padding, align_corners=True)
        out[:, :, k0:k1] = res.to(out.device, out.dtype)
    return out


def _normalised_affine(source: Grid, dest: Grid) -> np.ndarray:
    """4x4 map from destination (i, j, k) to source coordinates normalised to [-1, 1]."""
    to_src = np.linalg.inv(source.matrix) @ dest.matrix  # dest index -> source index
    size = np.array(source.shape[::-1], dtype=np.float64)  # (i, j, k)
    scale = np.where(size > 1, 2.0 / np.maximum(size - 1, 1), 1.0)
    norm = np.eye(4)
    norm[:3, :3] = np.diag(scale)
    norm[:3, 3] = np.where(size > 1, -1.0, 0.0)
    return norm @ to_src


def source_index_of(dest: Grid, source: Grid) -> np.ndarray:
    """4x4 map from ``dest`` voxel indices to continuous ``source`` voxel indices."""
    return np.linalg.inv(source.matrix) @ dest.matrix


def crop_grid(grid: Grid, box: tuple[slice, slice, slice]) -> Grid:
    """The sub-grid of ``grid`` selected by (k, j, i) slices."""
    start = np.array([box[2].start, box[1].start, box[0].start, 1.0])
    m = grid.matrix.copy()
    m[:3, 3] = (grid.matrix @ start)[:3]
    return Grid((box[0].stop - box[0].start, box[1].stop - box[1].start, box[2].stop - box[2].start), m)
