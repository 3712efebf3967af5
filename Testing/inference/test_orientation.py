"""Orientation, permutation and off-by-one: the direction-sensitive "edge-test" network marks the faces
of bright boxes toward the patient's right, anterior and superior. The expected faces are found by
an independent path (numpy on the voxel -> LPS matrix), so a flip or permutation applied the same
wrong way on the way in and on the way out, or a grid shifted by one voxel, breaks these tests."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from lkseg.inference.segmenter import Segmenter
from lkseg.io.image import Image
from lkseg.io.imageio import read_image, write_image

#: LPS unit vectors of the directions the classes mark: 1 right, 2 anterior, 3 superior
TOWARD = {1: np.array([-1.0, 0.0, 0.0]), 2: np.array([0.0, -1.0, 0.0]), 3: np.array([0.0, 0.0, 1.0])}


def expected_faces(image: Image, threshold: float = 0.5) -> np.ndarray:
    """For a signed-permutation grid: class c where a voxel is brighter than its neighbour one voxel
    toward TOWARD[c] (right wins over anterior over superior); array axes [k, j, i]."""
    arr = image.array.astype(np.float64)
    m = np.asarray(image.direction, float) * np.asarray(image.spacing, float)  # columns: i, j, k steps in LPS
    out = np.zeros(arr.shape, np.uint8)
    for c in (3, 2, 1):  # right, written last, wins
        col = int(np.argmax(np.abs(m.T @ TOWARD[c])))  # the voxel axis (i=0, j=1, k=2) along that direction
        step = 1 if m[:, col] @ TOWARD[c] > 0 else -1
        axis = 2 - col  # array axis of that voxel axis
        nxt = np.roll(arr, -step, axis=axis)
        edge = [slice(None)] * 3
        edge[axis] = -1 if step == 1 else 0  # the last voxel that way has no neighbour: no face
        nxt[tuple(edge)] = arr[tuple(edge)]
        out[(arr - nxt) > threshold] = c
    return out


def boxes(shape, rng: np.random.Generator, n: int = 4) -> np.ndarray:
    arr = np.zeros(shape, np.float32)
    for _ in range(n):
        lo = [int(rng.integers(2, s - 6)) for s in shape]
        hi = [min(s - 2, a + int(rng.integers(2, 5))) for a, s in zip(lo, shape)]
        arr[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = 1.0
    return arr


@pytest.mark.parametrize("perm", list(itertools.permutations(range(3))))
def test_faces_land_on_the_right_voxels_for_every_axis_order_and_flip(perm, edge_card) -> None:
    rng = np.random.default_rng(7 + 10 * perm[0] + perm[1])
    direction = np.zeros((3, 3))
    signs = rng.choice([-1.0, 1.0], size=3)
    for col, row in enumerate(perm):
        direction[row, col] = signs[col]
    shape = (13, 16, 19)
    image = Image(boxes(shape, rng, n=7), (0.9, 1.4, 2.2), tuple(rng.uniform(-40, 40, 3)), direction)
    truth = expected_faces(image)
    assert all((truth == c).sum() > 10 for c in (1, 2, 3))
    model, card = edge_card(roi=(24, 24, 24))  # one window covers the volume
    labels = Segmenter(model, card, device="cpu").segment(image).labels
    assert labels.same_grid(image, atol=1e-12)
    np.testing.assert_array_equal(labels.array, truth)


def test_faces_survive_sliding_windows_and_a_file_round_trip(tmp_path, edge_card) -> None:
    """Many overlapping windows and an LPS-flipped NIfTI (the bundled CT's layout), through real files."""
    rng = np.random.default_rng(3)
    image = Image(boxes((20, 30, 34), rng, n=8), (1.5, 1.0, 2.0), (12.0, -30.0, 5.0), np.diag([-1.0, -1.0, 1.0]))
    src = write_image(image, tmp_path / "boxes.nii.gz")
    model, card = edge_card(roi=(12, 12, 12), overlap=0.5)
    labels = Segmenter(model, card, device="cpu").segment(read_image(src)).labels
    truth = expected_faces(image)
    np.testing.assert_array_equal(labels.array, truth)
    # the oracle itself tells the directions apart: mirrored left-right, the right faces move
    mirrored = Image(image.array[:, :, ::-1].copy(), image.spacing, image.origin, image.direction)
    assert ((expected_faces(mirrored)[:, :, ::-1] == 1) != (truth == 1)).any()
