"""Geometry is sacred: labels must land on the exact input voxels, whatever the grid.

Synthetic "organs" are drawn in PHYSICAL space by an independent path (numpy: physical point =
origin + direction @ (spacing * ijk), then an inside test), the full Segmenter runs with the
"threshold-test" network (whose output is known) and a target spacing different from the
input's, and the returned labels must match the drawing on the input's own grid.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from lkseg.evaluation.metrics import dice
from lkseg.inference.segmenter import Segmenter
from lkseg.io.image import Image
from lkseg.io.imageio import read_image
from repo_data import SAMPLE_CT


def random_rotation(rng: np.random.Generator, reflect: bool) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q @ np.diag(np.sign(np.diag(r)))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    if reflect:  # det -1: a flipped (left-handed) grid
        q[:, 2] *= -1
    return q


def physical_points(size_ijk, spacing, origin, direction) -> np.ndarray:
    """(k, j, i, 3) LPS points of every voxel centre, computed without lkseg."""
    i, j, k = size_ijk
    kk, jj, ii = np.meshgrid(np.arange(k), np.arange(j), np.arange(i), indexing="ij")
    ijk = np.stack([ii, jj, kk], axis=-1).astype(np.float64)
    return np.asarray(origin) + (ijk * np.asarray(spacing)) @ np.asarray(direction).T


def draw_nested_organs(points: np.ndarray, c1, r1: float, c2, r2: float):
    """organ 1 (intensity 1): a ball; organ 2 (intensity 2): a smaller ball inside it, off-centre."""
    d1 = np.linalg.norm(points - c1, axis=-1)
    d2 = np.linalg.norm(points - c2, axis=-1)
    truth = np.where(d2 < r2, 2, np.where(d1 < r1, 1, 0)).astype(np.uint8)
    # distance of each voxel centre to the nearest organ boundary
    boundary = np.minimum(np.abs(d1 - r1), np.abs(d2 - r2))
    return truth, boundary


CASES = list(range(6))


@pytest.mark.parametrize("case", CASES)
def test_random_oblique_grids(case: int, threshold_card) -> None:
    rng = np.random.default_rng(100 + case)
    direction = random_rotation(rng, reflect=case % 2 == 1)
    spacing = rng.uniform(0.8, 2.2, 3)
    size = tuple(int(s) for s in rng.integers(33, 46, 3) | 1)  # odd sizes
    origin = rng.uniform(-200, 200, 3)
    target = tuple(rng.uniform(1.1, 1.9, 3))  # never the input's spacing
    points = physical_points(size, spacing, origin, direction)
    centre = points.reshape(-1, 3).mean(axis=0)
    extent = min(s * n for s, n in zip(spacing, size))
    r1 = 0.38 * extent
    c1 = centre + rng.uniform(-0.08, 0.08, 3) * extent
    c2 = c1 + np.array([0.35 * r1, -0.15 * r1, 0.1 * r1])
    r2 = 0.5 * r1
    truth, boundary = draw_nested_organs(points, c1, r1, c2, r2)
    image = Image(truth.astype(np.float32), spacing, origin, direction)

    model, card = threshold_card(thresholds=(0.5, 1.5), spacing=target, roi=(16, 16, 16))
    result = Segmenter(model, card, device="cpu").segment(image)

    labels = result.labels
    assert labels.same_grid(image, atol=1e-9)
    assert labels.array.dtype == np.uint8
    for v in (1, 2):
        assert (truth == v).sum() > 50
        score = dice(labels.array == v, truth == v)
        print(f"case {case} organ {v}: Dice {score:.4f}")
        assert score >= 0.95, f"organ {v}"
    interior = boundary > 1.0 * (max(spacing) + max(target))
    assert interior.sum() > 0.5 * truth.size * 0.2
    np.testing.assert_array_equal(labels.array[interior], truth[interior])


@pytest.mark.parametrize("perm", list(itertools.permutations(range(3)))[::2])
def test_axis_permutations_and_flips_are_exact(perm, threshold_card) -> None:
    """Signed-permutation direction at the input's own spacing: every voxel exactly right."""
    rng = np.random.default_rng(sum(perm))
    signs = rng.choice([-1.0, 1.0], size=3)
    direction = np.zeros((3, 3))
    for col, row in enumerate(perm):
        direction[row, col] = signs[col]
    arr = rng.choice([0.0, 1.0, 2.0], size=(9, 12, 15), p=[0.5, 0.3, 0.2]).astype(np.float32)
    image = Image(arr, (0.9, 1.7, 2.3), tuple(rng.uniform(-50, 50, 3)), direction)
    model, card = threshold_card(thresholds=(0.5, 1.5), spacing=None, roi=(8, 8, 8), sw_batch_size=3)
    labels = Segmenter(model, card, device="cpu").segment(image).labels
    assert labels.same_grid(image, atol=1e-12)
    np.testing.assert_array_equal(labels.array, arr.astype(np.uint8))


def test_real_ct_keeps_its_geometry(threshold_card) -> None:
    """Real CT (LPS-flipped NIfTI) with HU bands: exact at its own spacing, close when resampled."""
    image = read_image(SAMPLE_CT)
    # soft tissue (-100..299 HU) and bone/contrast (>= 300 HU); thresholds sit between integer HU
    # (-100.5 and 299.5 HU after the -1000..1000 -> 0..2 window) so float rounding cannot decide
    intensity = {"mode": "window", "a_min": -1000, "a_max": 1000, "b_min": 0.0, "b_max": 2.0, "clip": True}
    hu = image.array
    truth = np.where(hu >= 300, 2, np.where(hu >= -100, 1, 0))

    model, card = threshold_card(thresholds=(0.8995, 1.2995), spacing=None, roi=(48, 48, 16), intensity=intensity)
    exact = Segmenter(model, card, device="cpu").segment(image).labels
    assert exact.same_grid(image, atol=1e-9)
    np.testing.assert_array_equal(exact.array, truth)

    model, card = threshold_card(thresholds=(0.8995, 1.2995), spacing=(2.0, 2.0, 2.5), roi=(48, 48, 16),
                                 intensity=intensity)
    labels = Segmenter(model, card, device="cpu").segment(image).labels
    assert labels.same_grid(image, atol=1e-9)
    score = dice(labels.array == 1, truth == 1)
    assert score > 0.93
    # one voxel off in any direction already does measurably worse
    for axis in range(3):
        for step in (-1, 1):
            assert dice(np.roll(labels.array, step, axis=axis) == 1, truth == 1) < score - 0.01


def test_network_tensor_has_monai_layout(threshold_card) -> None:
    """At the input's spacing our network tensor equals MONAI's LoadImage + Orientation("RAS")
    tensor voxel for voxel, so weights trained with MONAI pipelines see the same axes."""
    import torch
    from lkseg.preprocessing.pipeline import preprocess
    from monai.transforms import EnsureChannelFirst, LoadImage, Orientation

    path = SAMPLE_CT
    _, card = threshold_card(spacing=None)
    ours = preprocess(read_image(path), card.preprocessing).tensor[0]
    theirs = Orientation(axcodes="RAS")(EnsureChannelFirst()(LoadImage(image_only=True)(str(path))))
    assert tuple(ours.shape) == tuple(theirs.shape)
    # (nibabel and SimpleITK apply the NIfTI intensity scaling in different precisions: <0.05 HU)
    torch.testing.assert_close(ours, torch.as_tensor(np.asarray(theirs), dtype=torch.float32), atol=0.05, rtol=0)


@pytest.mark.parametrize("seed", [0, 1])
def test_fast_back_resampling_equals_full_interpolation(seed: int) -> None:
    """Interpolating only where neighbouring network labels disagree gives the full result exactly."""
    import torch
    import torch.nn.functional as F
    from lkseg.inference.back_resampling import labels_on_source
    from lkseg.preprocessing.spatial import Grid, network_grid

    rng = np.random.default_rng(seed)
    source = Grid((23, 31, 27), Image(np.zeros((23, 31, 27)), rng.uniform(0.7, 2.0, 3), rng.uniform(-9, 9, 3),
                                      random_rotation(rng, reflect=seed == 1)).ijk_to_lps())
    grid = network_grid(source, "RAS", (1.3, 1.6, 1.1))
    if seed == 1:  # a cropped network grid: part of the input lies outside it
        from lkseg.preprocessing.spatial import crop_grid

        grid = crop_grid(grid, (slice(3, grid.shape[0] - 2), slice(0, grid.shape[1] - 4), slice(2, grid.shape[2])))
    coarse = torch.rand(1, 5, 5, 6, 4, generator=torch.Generator().manual_seed(seed))
    probs = torch.softmax(4 * F.interpolate(coarse, size=grid.shape, mode="trilinear"), dim=1)
    fast = labels_on_source(probs, grid, source, 5, method="fast", slab_voxels=5000)
    full = labels_on_source(probs, grid, source, 5, method="full")
    assert len(np.unique(full)) >= 3
    np.testing.assert_array_equal(fast, full)
    # slab by slab (a few input slices at a time) the full interpolation gives the same labels
    np.testing.assert_array_equal(labels_on_source(probs, grid, source, 5, method="full", slab_voxels=2000), full)


@pytest.mark.parametrize("case", ["lps", "flipped", "permuted", "cropped"])
def test_axis_aligned_back_resampling_equals_the_general_path(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Axis-aligned grids take the per-axis path (no per-voxel matrix product). It gives exactly the labels of
    the general path, with flips, permuted axes and a cropped network grid (input voxels outside it are
    background), and the full interpolation's up to ties (the full path computes its coordinates another way,
    so at a voxel where two classes tie to float precision either may win: at most 2 voxels here)."""
    import torch
    import torch.nn.functional as F
    from lkseg.inference import back_resampling
    from lkseg.inference.back_resampling import _axis_map, labels_on_source
    from lkseg.preprocessing.spatial import Grid, crop_grid, network_grid

    direction = {"lps": np.eye(3), "flipped": np.diag([-1.0, -1.0, 1.0]), "cropped": np.diag([1.0, -1.0, -1.0]),
                 "permuted": np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])}[case]
    source = Grid((21, 33, 26), Image(np.zeros((21, 33, 26)), (0.8, 1.3, 2.1), (4.0, -7.0, 11.0), direction).ijk_to_lps())
    grid = network_grid(source, "RAS", (1.7, 1.1, 1.4))
    if case == "cropped":
        grid = crop_grid(grid, (slice(2, grid.shape[0] - 3), slice(1, grid.shape[1]), slice(0, grid.shape[2] - 2)))
    assert _axis_map(np.linalg.inv(grid.matrix) @ source.matrix) is not None
    coarse = torch.rand(1, 6, 5, 6, 4, generator=torch.Generator().manual_seed(7))
    probs = torch.softmax(4 * F.interpolate(coarse, size=grid.shape, mode="trilinear"), dim=1)
    fast = labels_on_source(probs, grid, source, 6, method="fast", slab_voxels=3000)
    full = labels_on_source(probs, grid, source, 6, method="full")
    monkeypatch.setattr(back_resampling, "_axis_map", lambda matrix: None)  # the general path, for comparison
    general = labels_on_source(probs, grid, source, 6, method="fast", slab_voxels=3000)
    assert len(np.unique(full)) >= 3
    if case == "cropped":
        assert (full == 0).any()
    np.testing.assert_array_equal(fast, general)
    assert int((fast != full).sum()) <= 2


def test_a_rotated_grid_is_not_taken_for_an_aligned_one() -> None:
    from lkseg.inference.back_resampling import _axis_map

    rotation = random_rotation(np.random.default_rng(3), reflect=False)
    m = np.eye(4)
    m[:3, :3] = rotation
    assert _axis_map(m) is None
    m[:3, :3] = np.diag([2.0, -0.5, 1.0])[[2, 0, 1]]
    assert _axis_map(m) == [2, 0, 1]  # rows: network axis i follows source k, j follows i, k follows j
