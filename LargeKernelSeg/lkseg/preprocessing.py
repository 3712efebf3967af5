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
(GPU when there is one), in slabs along k to bound memory.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from lkseg.errors import LkSegError
from lkseg.image import Image

log = logging.getLogger(__name__)

#: LPS unit vector of each anatomical direction letter
_AXIS_LETTERS = {
    "R": (-1.0, 0.0, 0.0), "L": (1.0, 0.0, 0.0),
    "A": (0.0, -1.0, 0.0), "P": (0.0, 1.0, 0.0),
    "S": (0.0, 0.0, 1.0), "I": (0.0, 0.0, -1.0),
}
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


@dataclass
class Preprocessed:
    """The network input and what is needed to map predictions back."""

    tensor: torch.Tensor  # (1, 1, X, Y, Z) float32 (MONAI layout, X along R for "RAS"), on the device
    grid: Grid  # the network grid (after any crop)
    source: Grid  # the input grid


def orientation_axes(direction: np.ndarray, code: str = "RAS") -> tuple[tuple[int, ...], tuple[int, ...]]:
    """For each new axis, which input axis it is and its sign (+1 or -1).

    ``code`` is a three-letter orientation such as ``"RAS"`` or ``"LPS"``. The permutation
    maximising the summed |cosine| between the input axes and the wanted axes is chosen, so
    oblique images get the closest axis-aligned orientation.
    """
    code = code.upper()
    if len(code) != 3 or any(c not in _AXIS_LETTERS for c in code) or len({_pair(c) for c in code}) != 3:
        raise LkSegError(f"orientation {code!r} is not a valid three-letter code such as 'RAS' or 'LPS'")
    targets = np.array([_AXIS_LETTERS[c] for c in code])  # (3 new axes, 3 LPS)
    cos = targets @ np.asarray(direction, dtype=np.float64)  # [new axis, input axis]
    best = max(itertools.permutations(range(3)), key=lambda p: sum(abs(cos[a, p[a]]) for a in range(3)))
    signs = tuple(1 if cos[a, best[a]] >= 0 else -1 for a in range(3))
    return tuple(best), signs


def _pair(letter: str) -> int:
    return {"R": 0, "L": 0, "A": 1, "P": 1, "S": 2, "I": 2}[letter]


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


def normalise_intensity(x: torch.Tensor, intensity: dict[str, Any]) -> torch.Tensor:
    """Apply the card's intensity settings: window (a/b min/max, clip), z-score or none."""
    mode = (intensity or {}).get("mode", "none")
    if mode == "window":
        a_min, a_max = float(intensity["a_min"]), float(intensity["a_max"])
        b_min, b_max = float(intensity.get("b_min", 0.0)), float(intensity.get("b_max", 1.0))
        if a_max == a_min:
            raise LkSegError("the model card's intensity window has a_min == a_max")
        x = (x - a_min) / (a_max - a_min) * (b_max - b_min) + b_min
        if intensity.get("clip", True):
            x = x.clamp(min(b_min, b_max), max(b_min, b_max))
        return x
    if mode == "zscore":
        std = x.std()
        return (x - x.mean()) / (std if float(std) > 0 else 1.0)
    if mode == "none":
        return x
    raise LkSegError(f"the model card's intensity mode {mode!r} is not one of window, zscore, none")


def foreground_box(x: torch.Tensor, threshold: float, margin: int = 2) -> tuple[slice, slice, slice] | None:
    """Bounding box (k, j, i slices) of voxels above ``threshold`` plus ``margin``, or None if empty."""
    mask = x[0, 0] > threshold
    if not bool(mask.any()):
        return None
    box = []
    for dim in range(3):
        other = tuple(d for d in range(3) if d != dim)
        hit = torch.nonzero(mask.to(torch.int32).sum(dim=other)).flatten()
        lo = max(0, int(hit.min()) - margin)
        hi = min(mask.shape[dim], int(hit.max()) + margin + 1)
        box.append(slice(lo, hi))
    return tuple(box)


def crop_grid(grid: Grid, box: tuple[slice, slice, slice]) -> Grid:
    """The sub-grid of ``grid`` selected by (k, j, i) slices."""
    start = np.array([box[2].start, box[1].start, box[0].start, 1.0])
    m = grid.matrix.copy()
    m[:3, 3] = (grid.matrix @ start)[:3]
    return Grid((box[0].stop - box[0].start, box[1].stop - box[1].start, box[2].stop - box[2].start), m)


def preprocess(image: Image, preprocessing: Any, device: torch.device | str = "cpu") -> Preprocessed:
    """Orient, resample and normalise ``image`` as the card's ``Preprocessing`` says."""
    device = torch.device(device)
    source = Grid.of(image)
    spacing = getattr(preprocessing, "spacing", None)
    grid = network_grid(source, getattr(preprocessing, "orientation", "RAS"),
                        tuple(spacing) if spacing is not None else None)
    vol = torch.from_numpy(np.ascontiguousarray(image.array, dtype=np.float32))[None, None].to(device)
    x = resample(vol, source, grid, mode="bilinear", padding="border")
    del vol
    intensity = getattr(preprocessing, "intensity", {"mode": "none"})
    x = normalise_intensity(x, intensity)
    if getattr(preprocessing, "crop_foreground", False):
        threshold = float(intensity.get("b_min", 0.0)) if intensity.get("mode") == "window" else float(x.min())
        box = foreground_box(x, threshold)
        if box is not None:
            x = x[:, :, box[0], box[1], box[2]].contiguous()
            grid = crop_grid(grid, box)
    log.debug("network grid %s spacing %s (input %s spacing %s)", grid.shape, grid.spacing, source.shape, source.spacing)
    return Preprocessed(x, grid, source)


def labels_on_source(probs: torch.Tensor, grid: Grid, source: Grid, num_classes: int,
                     slab_voxels: int = 2_000_000, method: str = "fast") -> np.ndarray:
    """Resample class probabilities (1, C, *grid.shape) onto ``source`` and take the argmax.

    The label of each input voxel is the argmax of the probabilities trilinearly interpolated at
    its centre. ``method="full"`` interpolates every channel at every voxel. ``method="fast"``
    (default) gives the same labels with far less work: where the 8 network voxels around a point
    share one argmax c, every convex combination of their probability vectors has argmax c too,
    so only points in cells whose corners disagree (near organ boundaries) are interpolated.
    Input voxels more than half a voxel outside the network grid (possible only after a
    foreground crop) are background. Returns a ``[k, j, i]`` uint8 array (uint16 above 255
    classes) on the CPU.
    """
    if method not in ("fast", "full"):
        raise ValueError(f"method must be 'fast' or 'full', got {method!r}")
    dtype = np.uint8 if num_classes <= 256 else np.uint16
    sk, sj, si = source.shape
    labels = np.zeros((sk, sj, si), dtype=dtype)
    device = probs.device
    to_net = np.linalg.inv(grid.matrix) @ source.matrix  # source index -> network index
    t = torch.as_tensor(to_net, dtype=torch.float32, device=device)
    n_ijk = torch.as_tensor(grid.shape[::-1], dtype=torch.float32, device=device)
    corners = np.array([[i, j, k, 1.0] for i in (0, si - 1) for j in (0, sj - 1) for k in (0, sk - 1)]) @ to_net.T
    covered = bool(np.all(corners[:, :3] >= -0.5) and np.all(corners[:, :3] <= np.array(grid.shape[::-1]) - 0.5))
    if method == "fast":
        net = probs[0].argmax(dim=0)  # network-grid labels, [k, j, i] of the grid
        padded = F.pad(net[None, None].float(), (0, 1, 0, 1, 0, 1), mode="replicate")
        uniform = (F.max_pool3d(padded, 2, stride=1) == -F.max_pool3d(-padded, 2, stride=1))[0, 0]
        net_flat, uniform_flat = net.reshape(-1), uniform.reshape(-1)
        strides = torch.tensor([1, grid.shape[2], grid.shape[2] * grid.shape[1]], device=device)
        scale = torch.where(n_ijk > 1, 2.0 / (n_ijk - 1).clamp_min(1), torch.zeros_like(n_ijk))
    step = max(1, slab_voxels // max(1, si * sj))
    ii = torch.arange(si, dtype=torch.float32, device=device)
    jj = torch.arange(sj, dtype=torch.float32, device=device)
    for k0 in range(0, sk, step):
        k1 = min(sk, k0 + step)
        zz, yy, xx = torch.meshgrid(torch.arange(k0, k1, dtype=torch.float32, device=device), jj, ii, indexing="ij")
        idx = torch.stack((xx, yy, zz), dim=-1) @ t[:3, :3].T + t[:3, 3]  # continuous network (i, j, k)
        if method == "full":
            slab = Grid((k1 - k0, sj, si), source.matrix @ _shift(k0))
            lab = resample(probs, grid, slab, mode="bilinear", padding="border", slab_voxels=SLAB_VOXELS)[0].argmax(0)
        else:
            q = torch.minimum(idx.clamp_min(0), n_ijk - 1)  # border padding = clamping the coordinates
            cell = (q.floor().long() * strides).sum(dim=-1)
            lab = net_flat[cell]
            mixed = ~uniform_flat[cell]
            if bool(mixed.any()):
                g = q[mixed] * scale - (n_ijk > 1).float()  # normalised, align_corners=True
                p = F.grid_sample(probs, g.view(1, 1, 1, -1, 3), mode="bilinear", padding_mode="border",
                                  align_corners=True)
                lab[mixed] = p[0, :, 0, 0].argmax(dim=0)
        if not covered:
            outside = ((idx < -0.5) | (idx > n_ijk - 0.5)).any(dim=-1)
            lab[outside] = 0
        labels[k0:k1] = lab.to("cpu").numpy().astype(dtype)
    return labels


def _shift(k0: int) -> np.ndarray:
    m = np.eye(4)
    m[2, 3] = k0
    return m
