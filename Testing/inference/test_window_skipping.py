"""Windows of air are left out: the body's box holds every organ, voxels inside it get exactly the
probabilities of a full run, and the real CT model on a CT with a wide field of view runs fewer windows
and gives the same labels on every voxel of the body."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from lkseg.inference.segmenter import Segmenter
from lkseg.inference.sliding_window import SlidingWindow
from lkseg.io.image import Image
from lkseg.io.imageio import read_image
from lkseg.preprocessing.body import CT_BODY_HU, body_mask
from repo_data import DATA, DEFAULT_MODEL, REPO, SAMPLE_CT

SAMPLE_MR = REPO / "Resources" / "Data" / "sample_mr_t2.nii.gz"


def _tensor(image: Image) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image.array, dtype=np.float32))[None, None]


def test_the_body_holds_every_organ_of_a_ct_and_an_mr_and_not_the_air_around_it() -> None:
    ct, ct_labels = read_image(SAMPLE_CT), read_image(DATA / "totalsegmentator" / "example_seg.nii.gz")
    body = body_mask(_tensor(ct), "CT", axial_axis=0).numpy()  # image arrays are [k, j, i]: k is axial
    assert body[ct_labels.array > 0].all()
    lungs_and_gas = (ct.array < CT_BODY_HU) & body  # enclosed by the body wall: kept
    assert lungs_and_gas.sum() > 1000
    framed = np.pad(ct.array.astype(np.float32), ((0, 0), (10, 10), (10, 10)), constant_values=-1024)
    body = body_mask(torch.from_numpy(framed)[None, None], "CT", axial_axis=0).numpy()
    for side in (np.s_[:, :8], np.s_[:, -8:], np.s_[:, :, :8], np.s_[:, :, -8:]):
        assert not body[side].any()  # 10 voxels of air on each side, the body grown by 2
    mr, mr_labels = read_image(SAMPLE_MR), read_image(DATA / "chaos" / "label_1.nii.gz")
    body = body_mask(_tensor(mr), "MR T2-weighted", axial_axis=0).numpy()
    assert body[mr_labels.array > 0].all()
    assert body.mean() < 0.8


def test_a_ring_of_tissue_is_filled_to_its_outline_and_grown_by_the_margin() -> None:
    j, i = np.mgrid[:64, :64]
    r2 = (j - 32) ** 2 + (i - 30) ** 2
    ring = (r2 <= 20 ** 2) & (r2 >= 12 ** 2)  # a body wall around "lungs" of air
    volume = np.where(ring[None], 40.0, -1000.0).repeat(6, axis=0).astype(np.float32)  # [k, j, i], k axial
    body = body_mask(torch.from_numpy(volume)[None, None], "CT", axial_axis=0, margin=2).numpy()
    disc = np.pad((r2 <= 20 ** 2)[None].repeat(6, axis=0), 2)
    grown = np.lib.stride_tricks.sliding_window_view(disc, (5, 5, 5)).max(axis=(-3, -2, -1))
    assert np.array_equal(body, grown)


def test_voxels_inside_the_region_get_exactly_the_full_runs_probabilities() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv3d(1, 4, 5, padding=2), nn.Tanh(), nn.Conv3d(4, 3, 3, padding=1)).eval()

    def predict(batch: torch.Tensor) -> torch.Tensor:
        return torch.softmax(net(batch), dim=1)

    x = torch.randn(1, 1, 40, 33, 20)
    region = torch.zeros(40, 33, 20, dtype=torch.bool)
    region[5:14, 3:12, :] = True
    region[3, 30, 2] = True  # one voxel alone: its windows run too
    with torch.inference_mode():
        full_window = SlidingWindow(predict, 3, (16, 16, 16), overlap=0.5)
        full = full_window.run(x)
        part_window = SlidingWindow(predict, 3, (16, 16, 16), overlap=0.5)
        part = part_window.run(x, region=region)
    assert part_window.skipped > 0 and part_window.runs + part_window.skipped == full_window.runs
    assert torch.equal(part[:, :, region], full[:, :, region])
    far = part[0, :, 30:, 25:, :]  # covered by skipped windows only: background
    assert torch.equal(far[0], torch.ones_like(far[0])) and float(far[1:].abs().max()) == 0.0


def test_a_wide_field_of_view_runs_fewer_windows_and_the_same_labels_in_the_body() -> None:
    ct = read_image(SAMPLE_CT)
    pad = ((0, 0), (150, 150), (150, 150))  # 45 cm of air on every side: windows of nothing but air
    wide = np.pad(ct.array.astype(np.int16), pad, constant_values=-1024)
    origin = np.asarray(ct.origin) - np.asarray(ct.direction).reshape(3, 3) @ (np.array([150, 150, 0]) * np.asarray(ct.spacing))
    image = Image(wide, ct.spacing, tuple(origin), ct.direction)
    skip = Segmenter.from_checkpoint(DEFAULT_MODEL, "cpu").segment(image)
    full = Segmenter.from_checkpoint(DEFAULT_MODEL, "cpu", skip_empty_windows=False).segment(image)
    runs, skipped = skip.windows
    assert skipped > 0 and full.windows == (runs + skipped, 0)
    body = wide > CT_BODY_HU
    assert np.array_equal(skip.labels.array[body], full.labels.array[body])
    assert (skip.labels.array[body] > 0).sum() > 10_000  # the organs are there
    assert full.labels.same_grid(skip.labels) and skip.labels.same_grid(image)
