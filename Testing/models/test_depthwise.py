"""The FFT path of the large-kernel depthwise conv equals the direct one (outputs and gradients), and
``auto`` keeps what it measured."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from lkseg.models import depthwise
from lkseg.models.depthwise import depthwise_conv3d, fft_depthwise_conv3d
from lkseg.models.repuxnet import RepUXBlock


def direct(x, w, b):
    return F.conv3d(x, w, b, padding=w.shape[-1] // 2, groups=w.shape[0])


@pytest.mark.parametrize(("shape", "k"), [((2, 3, 9, 11, 13), 3), ((1, 4, 12, 10, 8), 7), ((1, 2, 16, 20, 18), 21),
                                          ((1, 2, 5, 6, 7), 9)])
def test_fft_equals_direct_forward_and_backward(shape, k) -> None:
    torch.manual_seed(k)
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    w = torch.randn(shape[1], 1, k, k, k, dtype=torch.float64, requires_grad=True)
    b = torch.randn(shape[1], dtype=torch.float64, requires_grad=True)
    probe = torch.randn(shape, dtype=torch.float64)  # a non-uniform upstream gradient
    grads = []
    for fn in (direct, fft_depthwise_conv3d):
        out = fn(x, w, b)
        grads.append((out, *torch.autograd.grad((out * probe).sum(), (x, w, b))))
    for a, c in zip(*grads):
        torch.testing.assert_close(c, a, rtol=1e-9, atol=1e-9)


def test_float32_error_is_small_on_a_repuxnet_sized_input() -> None:
    torch.manual_seed(0)
    x, w, b = torch.randn(1, 8, 24, 24, 24), torch.randn(8, 1, 21, 21, 21) * 0.01, torch.randn(8)
    ref = direct(x, w, b)
    assert ((fft_depthwise_conv3d(x, w, b) - ref).abs().max() / ref.abs().max()).item() < 1e-5


def test_auto_measures_once_and_keeps_its_choice(monkeypatch) -> None:
    monkeypatch.setattr(depthwise, "_chosen", {})
    x, w = torch.randn(1, 2, 14, 14, 14), torch.randn(2, 1, 13, 13, 13)
    first = depthwise_conv3d(x, w, None, path="auto")
    torch.testing.assert_close(first, direct(x, w, None))  # the measuring call returns the direct result
    (key, choice), = depthwise.chosen_paths().items()
    assert key[2] == 13 and key[3] == (1, 2, 14, 14, 14) and choice in ("direct", "fft")
    depthwise._chosen[key] = "fft"
    torch.testing.assert_close(depthwise_conv3d(x, w, None, path="auto"), fft_depthwise_conv3d(x, w, None))
    small = torch.randn(2, 1, 7, 7, 7)
    depthwise_conv3d(x, small, None, path="auto")
    assert len(depthwise.chosen_paths()) == 1  # a 7^3 kernel never tries the FFT
    with pytest.raises(ValueError, match="LKSEG_DWCONV must be one of"):
        depthwise_conv3d(x, w, None, path="fast")


def test_cpu_training_takes_the_fft_and_inference_keeps_direct_for_small_kernels(monkeypatch) -> None:
    """A 7^3 kernel: no gradient -> direct (bit-equal to F.conv3d); a gradient on the CPU -> FFT, whose
    gradients equal the direct ones."""
    monkeypatch.setattr(depthwise, "_chosen", {})
    torch.manual_seed(2)
    conv = depthwise.DepthwiseConv3d(3, 7)
    x = torch.randn(1, 3, 10, 9, 8)
    with torch.no_grad():
        assert torch.equal(conv(x), F.conv3d(x, conv.weight, conv.bias, padding=3, groups=3))
    calls = []
    monkeypatch.setattr(depthwise, "fft_depthwise_conv3d",
                        lambda *a: calls.append(1) or fft_depthwise_conv3d(*a))
    out = conv(x)
    grads = torch.autograd.grad(out.sum(), (conv.weight, conv.bias))
    expected = torch.autograd.grad(direct(x, conv.weight, conv.bias).sum(), (conv.weight, conv.bias))
    assert calls == [1]
    for g, e in zip(grads, expected):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-4)
    assert set(conv.state_dict()) == {"weight", "bias"}


def test_repux_block_on_either_path(monkeypatch) -> None:
    torch.manual_seed(1)
    block = RepUXBlock(dim=4, kernel_size=15).eval()
    x = torch.randn(1, 4, 16, 16, 16)
    with torch.no_grad():
        monkeypatch.setenv("LKSEG_DWCONV", "direct")
        a = block(x)
        monkeypatch.setenv("LKSEG_DWCONV", "fft")
        b = block(x)
    torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)


def test_fft_in_channel_chunks_equals_direct_and_keeps_channels_last(monkeypatch) -> None:
    monkeypatch.setattr(depthwise, "FFT_CHUNK_BYTES", 1)  # one channel per chunk
    x = torch.randn(2, 5, 9, 8, 7, dtype=torch.float64).contiguous(memory_format=torch.channels_last_3d)
    x.requires_grad_(True)
    w = torch.randn(5, 1, 5, 5, 5, dtype=torch.float64, requires_grad=True)
    b = torch.randn(5, dtype=torch.float64, requires_grad=True)
    out = fft_depthwise_conv3d(x, w, b)
    ref = F.conv3d(x, w, b, padding=2, groups=5)
    assert out.is_contiguous(memory_format=torch.channels_last_3d)
    assert torch.allclose(out, ref, atol=1e-10)
    grads = torch.autograd.grad(out.sum(), (x, w, b))
    ref_grads = torch.autograd.grad(ref.sum(), (x, w, b))
    assert all(torch.allclose(g, r, atol=1e-9) for g, r in zip(grads, ref_grads))


def test_taps_out_of_reach_are_cropped_and_large_convs_take_the_fft_unmeasured(monkeypatch) -> None:
    monkeypatch.setattr(depthwise, "_chosen", {})
    torch.manual_seed(4)
    x, w, b = torch.randn(1, 3, 3, 4, 5), torch.randn(3, 1, 13, 13, 13), torch.randn(3)
    assert depthwise.within_reach(w, (3, 4, 5)).shape[-3:] == (5, 7, 9)  # 2n - 1 per axis
    with torch.no_grad():
        out = depthwise_conv3d(x, w, b, path="auto")
    torch.testing.assert_close(out, F.conv3d(x, w, b, padding=6, groups=3), rtol=1e-5, atol=1e-5)
    assert depthwise.chosen_paths() == {}  # cropped below FFT_MIN_KERNEL: direct, nothing measured
    big = torch.randn(1, 2, 24, 24, 24)
    w21 = torch.randn(2, 1, 21, 21, 21) * 0.01
    with torch.no_grad():
        out = depthwise_conv3d(big, w21, None, path="auto")
    assert depthwise.chosen_paths() == {}  # 24^3 x 21^3 taps: FFT without timing the direct conv
    torch.testing.assert_close(out, F.conv3d(big, w21, None, padding=10, groups=2), rtol=1e-4, atol=1e-4)
