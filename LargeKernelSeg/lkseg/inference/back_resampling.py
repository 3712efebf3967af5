"""The exact way back: class probabilities on the network grid -> labels on the input grid."""

from __future__ import annotations

from collections.abc import Callable

import logging

import numpy as np
import torch
import torch.nn.functional as F

from lkseg.preprocessing.spatial import SLAB_VOXELS, Grid, resample

log = logging.getLogger(__name__)


def labels_on_source(probs: torch.Tensor, grid: Grid, source: Grid, num_classes: int,
                     slab_voxels: int = 2_000_000, method: str = "fast",
                     progress: Callable[[float], None] | None = None) -> np.ndarray:
    """Resample class probabilities (1, C, *grid.shape) onto ``source`` and take the argmax.

    The label of each input voxel is the argmax of the probabilities trilinearly interpolated at
    its centre. ``method="full"`` interpolates every channel at every voxel. ``method="fast"``
    (default) gives the same labels with far less work: where the 8 network voxels around a point
    share one argmax c, every convex combination of their probability vectors has argmax c too,
    so only points in cells whose corners disagree (near organ boundaries) are interpolated.
    Input voxels more than half a voxel outside the network grid (possible only after a
    foreground crop) are background. Returns a ``[k, j, i]`` uint8 array (uint16 above 255
    classes) on the CPU. ``progress(fraction)`` is called after each slab.
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
        # network-grid labels, [k, j, i] of the grid (max().indices is argmax, several times faster on CPU)
        net = probs[0].max(dim=0).indices
        padded = F.pad(net[None, None].float(), (0, 1, 0, 1, 0, 1), mode="replicate")
        uniform = (F.max_pool3d(padded, 2, stride=1) == -F.max_pool3d(-padded, 2, stride=1))[0, 0]
        net_flat, uniform_flat = net.reshape(-1), uniform.reshape(-1)
        strides = torch.tensor([1, grid.shape[2], grid.shape[2] * grid.shape[1]], device=device)
        scale = torch.where(n_ijk > 1, 2.0 / (n_ijk - 1).clamp_min(1), torch.zeros_like(n_ijk))
    step = max(1, slab_voxels // max(1, si * sj))
    axes = _axis_map(to_net) if method == "fast" else None
    if axes is not None:  # axis-aligned grids (most scans): per-axis indices, no per-voxel matrix product
        small = net_flat.to(torch.uint8 if num_classes <= 256 else torch.int16)  # 8x less to gather than int64
        for k0 in range(0, sk, step):
            k1 = min(sk, k0 + step)
            labels[k0:k1] = _aligned_slab(probs, small, uniform_flat, strides, scale, n_ijk, to_net, axes,
                                          (k0, k1, sj, si)).to("cpu").numpy().astype(dtype, copy=False)
            if progress is not None:
                progress(k1 / sk)
        return labels
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
                lab[mixed] = _interpolated_labels(probs, q[mixed], scale, n_ijk)
        if not covered:
            outside = ((idx < -0.5) | (idx > n_ijk - 0.5)).any(dim=-1)
            lab[outside] = 0
        labels[k0:k1] = lab.to("cpu").numpy().astype(dtype)
        if progress is not None:
            progress(k1 / sk)
    return labels


def _interpolated_labels(probs: torch.Tensor, q: torch.Tensor, scale: torch.Tensor, n_ijk: torch.Tensor) -> torch.Tensor:
    """Argmax of the probabilities trilinearly interpolated at network coordinates ``q`` [N, 3] (i, j, k)."""
    g = q * scale - (n_ijk > 1).float()  # normalised, align_corners=True
    p = F.grid_sample(probs, g.view(1, 1, 1, -1, 3), mode="bilinear", padding_mode="border", align_corners=True)
    return p[0, :, 0, 0].max(dim=0).indices  # max().indices is argmax, several times faster on CPU


def _axis_map(to_net: np.ndarray, tol: float = 1e-9) -> list[int] | None:
    """For each network axis (i, j, k) the one source axis it depends on, or None when the grids are
    rotated against each other (then every voxel needs the full matrix product)."""
    linear = to_net[:3, :3]
    axes = []
    for row in linear:
        big = np.abs(row) > tol * max(1.0, float(np.abs(row).max()))
        if int(big.sum()) != 1:
            return None
        axes.append(int(np.argmax(big)))
    return axes if sorted(axes) == [0, 1, 2] else None


def _aligned_slab(probs: torch.Tensor, net_flat: torch.Tensor, uniform_flat: torch.Tensor, strides: torch.Tensor,
                  scale: torch.Tensor, n_ijk: torch.Tensor, to_net: np.ndarray, axes: list[int],
                  slab: tuple[int, int, int, int]) -> torch.Tensor:
    """Labels of source slices k0..k1 when network axis a depends on source axis ``axes[a]`` only: the cell
    index is a sum of three 1D index arrays broadcast over the slab; only voxels in mixed cells are
    interpolated, exactly as the general path does."""
    k0, k1, sj, si = slab
    device = probs.device
    # float32 as in the general path, so both compute the same coordinates
    t = torch.as_tensor(to_net, dtype=torch.float32, device=device)
    coords = [torch.arange(si, dtype=torch.float32, device=device), torch.arange(sj, dtype=torch.float32, device=device),
              torch.arange(k0, k1, dtype=torch.float32, device=device)]
    shape = (k1 - k0, sj, si)
    index = torch.int32 if net_flat.numel() < 2**31 else torch.long
    cell = torch.zeros(shape, dtype=index, device=device)
    outside = torch.zeros(shape, dtype=torch.bool, device=device)
    for a, s in enumerate(axes):
        idx = coords[s] * t[a, s] + t[a, 3]
        view = [1, 1, 1]
        view[2 - s] = -1  # source axis i, j, k is array dim 2, 1, 0
        q = torch.minimum(idx.clamp_min(0), n_ijk[a] - 1)
        cell = cell + (q.floor().to(index) * strides[a].to(index)).view(view)
        outside = outside | ((idx < -0.5) | (idx > n_ijk[a] - 0.5)).view(view)
    lab = net_flat[cell]
    mixed = ~uniform_flat[cell]
    if bool(mixed.any()):
        where = mixed.nonzero()  # (dk, dj, di)
        src = torch.stack((where[:, 2].float(), where[:, 1].float(), (where[:, 0] + k0).float()), dim=-1)
        idx = torch.stack([src[:, s] * t[a, s] + t[a, 3] for a, s in enumerate(axes)], dim=-1)
        q = torch.minimum(idx.clamp_min(0), n_ijk - 1)
        lab[mixed] = _interpolated_labels(probs, q, scale, n_ijk).to(lab.dtype)
    if bool(outside.any()):
        lab[outside] = 0
    return lab


def _shift(k0: int) -> np.ndarray:
    m = np.eye(4)
    m[2, 3] = k0
    return m
