"""The Segmenter: OOM ladder, cancellation, progress, TTA, largest component, checkpoints, devices."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from lkseg.errors import Cancelled, LkSegError
from lkseg.inference.segmenter import Segmenter, segment_file
from lkseg.inference.sliding_window import SlidingWindow, gaussian_map, window_starts
from lkseg.io.image import Image
from lkseg.io.imageio import read_image, write_image


def ball_image(n: int = 40, extra_blob: bool = False) -> Image:
    """Identity-direction cube: a ball of intensity 1 holding a smaller ball of intensity 2."""
    k, j, i = np.meshgrid(*[np.arange(n)] * 3, indexing="ij")
    c = (n - 1) / 2
    d = np.sqrt((i - c) ** 2 + (j - c) ** 2 + (k - c) ** 2)
    arr = np.where(d < n * 0.15, 2.0, np.where(d < n * 0.35, 1.0, 0.0)).astype(np.float32)
    if extra_blob:
        arr[1:4, 1:4, 1:4] = 1.0  # detached from the big ball
    return Image(arr, (1.0, 1.0, 1.0), (3.0, -2.0, 7.0), np.eye(3))


def test_window_tiling_and_gaussian() -> None:
    assert window_starts(40, 16, 0.5) == [0, 8, 16, 24]
    assert window_starts(41, 16, 0.5) == [0, 8, 16, 24, 25]
    assert window_starts(10, 16, 0.5) == [0]
    g = gaussian_map((16, 16, 16))
    assert float(g.max()) == pytest.approx(1.0) and float(g.min()) > 0
    assert torch.equal(g, g.flip(0)) and torch.equal(g, g.flip(2))


@pytest.fixture
def reference(threshold_card):
    model, card = threshold_card(roi=(16, 16, 16), sw_batch_size=4)
    image = ball_image()
    result = Segmenter(model, card, device="cpu").segment(image)
    return image, result


def test_oom_ladder_halves_batches_then_stitches_on_cpu(threshold_card, reference) -> None:
    image, expected = reference
    model, card = threshold_card(roi=(16, 16, 16), sw_batch_size=4)
    buffers = (3 + 1) * 40 ** 3 * 4  # blended probabilities + weights, float32
    one_window = (1 + 3) * 16 ** 3 * 4
    # the buffers fit, but not together with even one window: 4 -> 2 -> 1 -> CPU stitching
    seg = Segmenter(model, card, device="cpu", memory_limit_bytes=buffers + one_window // 2)
    result = seg.segment(image)
    np.testing.assert_array_equal(result.labels.array, expected.labels.array)
    text = " | ".join(result.notes)
    assert "retrying with 2" in text and "retrying with 1" in text
    assert "stitching on the CPU" in text


def test_oom_when_buffers_do_not_fit(threshold_card, reference) -> None:
    image, expected = reference
    model, card = threshold_card(roi=(16, 16, 16), sw_batch_size=4)
    one_window = (1 + 3) * 16 ** 3 * 4
    result = Segmenter(model, card, device="cpu", memory_limit_bytes=2 * one_window).segment(image)
    np.testing.assert_array_equal(result.labels.array, expected.labels.array)
    assert any("buffers do not fit" in n for n in result.notes)
    assert any("retrying with 2" in n for n in result.notes)


def test_oom_gives_up_with_clear_error(threshold_card) -> None:
    model, card = threshold_card(roi=(16, 16, 16))
    seg = Segmenter(model, card, device="cpu", memory_limit_bytes=1000)
    with pytest.raises(LkSegError, match="out of memory.*one window"):
        seg.segment(ball_image())


def test_progress_is_monotonic_and_reaches_one(threshold_card) -> None:
    model, card = threshold_card(roi=(16, 16, 16), sw_batch_size=2)
    seen: list[tuple[float, str]] = []
    result = Segmenter(model, card, device="cpu").segment(ball_image(), progress=lambda f, s: seen.append((f, s)))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions)
    assert fractions[-1] == 1.0 and fractions[0] == 0.0
    assert sum(1 for _, s in seen if s == "model") == 64 // 2  # one report per window batch
    assert {"preprocess", "model", "resample", "postprocess", "total"} <= set(result.timings)
    assert result.device == "cpu"


def test_cancel_between_window_batches(threshold_card) -> None:
    model, card = threshold_card(roi=(16, 16, 16), sw_batch_size=1)
    cancel = threading.Event()
    batches = []

    def progress(fraction: float, stage: str) -> None:
        if stage == "model":
            batches.append(fraction)
            cancel.set()

    with pytest.raises(Cancelled):
        Segmenter(model, card, device="cpu").segment(ball_image(), progress=progress, cancel=cancel)
    assert len(batches) == 1  # stopped right after the first of 64 batches


def test_tta_runs_every_flip_and_agrees(threshold_card, reference) -> None:
    image, expected = reference
    model, card = threshold_card(roi=(16, 16, 16), sw_batch_size=4)
    calls = []
    model.register_forward_hook(lambda m, i, o: calls.append(tuple(i[0].shape)))
    result = Segmenter(model, card, device="cpu").segment(image, tta=True)
    np.testing.assert_array_equal(result.labels.array, expected.labels.array)  # voxel-wise net: flip-invariant
    assert len(calls) == 4 * (64 // 4)  # identity + 3 axis flips per window batch


def test_largest_component_removes_detached_blob(threshold_card) -> None:
    model, card = threshold_card(roi=(16, 16, 16))
    image = ball_image(extra_blob=True)
    seg = Segmenter(model, card, device="cpu")
    plain = seg.segment(image).labels.array
    cleaned = seg.segment(image, largest_component=True).labels.array
    assert (plain[1:4, 1:4, 1:4] == 1).all()
    assert (cleaned[1:4, 1:4, 1:4] == 0).all()
    rest = np.ones(plain.shape, bool)
    rest[1:4, 1:4, 1:4] = False
    np.testing.assert_array_equal(cleaned[rest], plain[rest])


def test_crop_foreground_and_constant_blend_give_same_labels(threshold_card, reference) -> None:
    image, expected = reference
    model, card = threshold_card(roi=(16, 16, 16), crop_foreground=True, blend="constant",
                                 intensity={"mode": "window", "a_min": 0, "a_max": 4, "b_min": 0, "b_max": 4,
                                            "clip": True})
    result = Segmenter(model, card, device="cpu").segment(image, sw_batch_size=3)
    np.testing.assert_array_equal(result.labels.array, expected.labels.array)


def test_voxels_outside_the_cropped_network_grid_are_background(threshold_card) -> None:
    """A network that calls background intensity "organ1": inside the foreground crop it does, but
    input voxels beyond the crop (more than its margin away) were never seen and stay background."""
    image = ball_image(40)
    model, card = threshold_card(thresholds=(-0.5, 0.5), roi=(16, 16, 16), crop_foreground=True,
                                 intensity={"mode": "window", "a_min": 0, "a_max": 4, "b_min": 0, "b_max": 4,
                                            "clip": True})
    labels = Segmenter(model, card, device="cpu").segment(image).labels.array
    fg = np.argwhere(image.array > 0)
    lo, hi = fg.min(axis=0), fg.max(axis=0)
    k, j, i = np.meshgrid(*[np.arange(s) for s in image.array.shape], indexing="ij")
    idx = np.stack([k, j, i], axis=-1)
    outside = ((idx < lo - 3) | (idx > hi + 3)).any(axis=-1)
    inside_box_background = (image.array == 0) & ((idx >= lo) & (idx <= hi)).all(axis=-1)
    assert outside.sum() > 1000 and inside_box_background.sum() > 1000
    assert (labels[outside] == 0).all()
    assert (labels[inside_box_background] == 1).all()  # what the network really says where it looked


def test_from_checkpoint_and_segment_file(tmp_path: Path, threshold_checkpoint: Path) -> None:
    image = ball_image()
    src = write_image(image, tmp_path / "ct.nrrd")
    out = tmp_path / "out" / "labels.nii.gz"
    result = segment_file(src, threshold_checkpoint, out, device="cpu")
    back = read_image(out)
    assert back.same_grid(image)
    np.testing.assert_array_equal(back.array, result.labels.array)
    assert set(np.unique(back.array)) == {0, 1, 2}
    assert result.table.names == ["organ1", "organ2"]
    assert "load" in result.timings and "write" in result.timings


def test_device_choice(threshold_card) -> None:
    model, card = threshold_card()
    assert Segmenter(model, card, device="cpu").device.type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(LkSegError, match="CUDA"):
            Segmenter(model, card, device="cuda")
        assert Segmenter(model, card, device="auto").device.type in ("cpu", "mps")
    with pytest.raises(LkSegError, match="unknown device"):
        Segmenter(model, card, device="tpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(threshold_card, reference) -> None:
    image, expected = reference
    model, card = threshold_card(roi=(16, 16, 16))
    result = Segmenter(model, card, device="cuda").segment(image, tta=True)
    assert result.device.startswith("cuda")
    np.testing.assert_array_equal(result.labels.array, expected.labels.array)


def test_intensity_modes() -> None:
    from lkseg.preprocessing.intensity import normalise_intensity

    x = torch.tensor([-1000.0, -125.0, 75.0, 275.0, 3000.0])
    w = normalise_intensity(x, {"mode": "window", "a_min": -125, "a_max": 275, "b_min": 0.0, "b_max": 1.0,
                                "clip": True})
    torch.testing.assert_close(w, torch.tensor([0.0, 0.0, 0.5, 1.0, 1.0]))
    unclipped = normalise_intensity(x, {"mode": "window", "a_min": -125, "a_max": 275, "b_min": 0.0, "b_max": 1.0,
                                        "clip": False})
    assert float(unclipped[-1]) == pytest.approx(3125 / 400)
    z = normalise_intensity(x, {"mode": "zscore"})
    assert float(z.mean()) == pytest.approx(0.0, abs=1e-6) and float(z.std()) == pytest.approx(1.0, abs=1e-6)
    assert normalise_intensity(x, {"mode": "none"}) is x
    with pytest.raises(LkSegError, match="intensity mode"):
        normalise_intensity(x, {"mode": "percentile"})


def test_cancel_between_tta_passes(threshold_card) -> None:
    model, card = threshold_card(roi=(16, 16, 16), sw_batch_size=64)  # one batch holds every window
    cancel = threading.Event()
    calls = []

    def hook(module, inputs, output):
        calls.append(1)
        cancel.set()

    model.register_forward_hook(hook)
    with pytest.raises(Cancelled):
        Segmenter(model, card, device="cpu").segment(ball_image(), cancel=cancel, tta=True)
    assert len(calls) == 1  # the three flipped passes never ran


@pytest.mark.parametrize("shape", [(50, 41, 37), (20, 41, 13)])  # the second needs padding up to the ROI
def test_constant_blend_equals_monai_sliding_window(shape) -> None:
    """Our tiling and stitching reproduce MONAI's sliding_window_inference exactly (constant blending)."""
    from monai.inferers import sliding_window_inference

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv3d(1, 4, 5, padding=2), torch.nn.GELU(), torch.nn.Conv3d(4, 3, 3, padding=1))
    x = torch.rand(1, 1, *shape)
    with torch.inference_mode():
        ours = SlidingWindow(lambda b: net(b), 3, (24, 24, 24), 0.5, "constant", 4).run(x)
        theirs = sliding_window_inference(x, (24, 24, 24), 4, net, overlap=0.5, mode="constant")
    assert ours.shape == theirs.shape
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_the_card_can_keep_only_the_largest_piece_of_each_organ(tmp_path, threshold_card):
    """A card that says ``largest_component`` drops the small islands of an organ, in the saved card's round
    trip too; ``largest_component=False`` (``--all-components``) keeps them."""
    from dataclasses import replace

    from lkseg.checkpoint.card import CheckpointError, InferenceSettings
    from lkseg.checkpoint.native import read_card, save_checkpoint

    model, card = threshold_card()
    card = replace(card, inference=replace(card.inference, largest_component=True))
    path = save_checkpoint(tmp_path / "lcc.safetensors", model.state_dict(), card)
    assert read_card(path).inference.largest_component is True
    arr = np.zeros((20, 24, 24), np.float32)
    arr[2:12, 2:12, 2:12] = 1.0      # organ1: the big piece
    arr[15:18, 18:21, 18:21] = 1.0   # organ1: a 27-voxel island
    arr[15:18, 2:5, 2:5] = 2.0       # organ2: one piece
    image = Image(arr, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), np.eye(3))
    seg = Segmenter.from_checkpoint(path, device="cpu")
    kept = seg.segment(image).labels.array
    assert int((kept == 1).sum()) == 1000 and int((kept == 2).sum()) == 27
    everything = seg.segment(image, largest_component=False).labels.array
    assert int((everything == 1).sum()) == 1027
    with pytest.raises(CheckpointError, match="largest_component must be true or false"):
        InferenceSettings(largest_component="yes")
    assert "largest_component" not in InferenceSettings().to_dict()  # older cards read and write unchanged
