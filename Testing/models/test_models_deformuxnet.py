"""3D DeformUX-Net and its pure-PyTorch depthwise deformable 3D convolution."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from lkseg.models.deform_conv import DeformConvPack3d, deform_conv3d_depthwise
from lkseg.models.deformuxnet import DeformUXNet
from lkseg.models.registry import build_model, count_parameters, get_spec
from reference_shapes import load_reference


def _reference(name: str) -> tuple[int, dict[str, tuple[int, ...]]]:
    """(parameter count, {key: shape}) from ``<name>_state_dict.tsv``."""
    params, shapes, _header = load_reference(name)
    return params, shapes


def _naive_deform_conv(x: torch.Tensor, offset: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                       pad: int) -> torch.Tensor:
    """Loop implementation of the official operator's definition (stride 1), for tiny inputs."""
    n, c, depth, height, width = x.shape
    k = weight.shape[-1]
    out = torch.zeros(n, c, depth, height, width, dtype=x.dtype)

    def value(b: int, ch: int, z: int, y: int, xx: int) -> float:
        if 0 <= z < depth and 0 <= y < height and 0 <= xx < width:
            return float(x[b, ch, z, y, xx])
        return 0.0

    for b in range(n):
        for od in range(depth):
            for oh in range(height):
                for ow in range(width):
                    for t in range(k ** 3):
                        i, j, l = t // (k * k), (t // k) % k, t % k
                        pd = od - pad + i + float(offset[b, 3 * t, od, oh, ow])
                        ph = oh - pad + j + float(offset[b, 3 * t + 1, od, oh, ow])
                        pw = ow - pad + l + float(offset[b, 3 * t + 2, od, oh, ow])
                        z0, y0, x0 = math.floor(pd), math.floor(ph), math.floor(pw)
                        fz, fy, fx = pd - z0, ph - y0, pw - x0
                        for ch in range(c):
                            v = 0.0
                            for dz in (0, 1):
                                for dy in (0, 1):
                                    for dx in (0, 1):
                                        wgt = (fz if dz else 1 - fz) * (fy if dy else 1 - fy) * (fx if dx else 1 - fx)
                                        v += wgt * value(b, ch, z0 + dz, y0 + dy, x0 + dx)
                            out[b, ch, od, oh, ow] += float(weight[ch, 0, i, j, l]) * v
    return out + bias.view(1, -1, 1, 1, 1)


@pytest.mark.parametrize("k", [3, 5])
def test_zero_offsets_equal_depthwise_conv3d(k: int) -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 4, 7, 6, 5)
    w = torch.randn(4, 1, k, k, k)
    b = torch.randn(4)
    offset = torch.zeros(2, 3 * k ** 3, 7, 6, 5)
    got = deform_conv3d_depthwise(x, offset, w, b, stride=1, padding=k // 2)
    want = F.conv3d(x, w, b, padding=k // 2, groups=4)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_random_offsets_match_loop_definition() -> None:
    """Fractional offsets, samples beyond the border (zero padding), an axis of size 1."""
    torch.manual_seed(1)
    for shape in [(1, 2, 3, 4, 3), (1, 2, 1, 3, 2)]:
        x = torch.randn(*shape, dtype=torch.float64)
        w = torch.randn(2, 1, 3, 3, 3, dtype=torch.float64)
        b = torch.randn(2, dtype=torch.float64)
        offset = 1.5 * torch.randn(1, 81, *shape[2:], dtype=torch.float64)
        got = deform_conv3d_depthwise(x, offset, w, b, stride=1, padding=1)
        torch.testing.assert_close(got, _naive_deform_conv(x, offset, w, b, pad=1), atol=1e-10, rtol=1e-10)


def test_gradcheck_input_weight_offsets() -> None:
    torch.manual_seed(2)
    x = torch.randn(1, 2, 4, 4, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 1, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, dtype=torch.float64, requires_grad=True)
    # Fractional parts in [0.2, 0.8] keep every sample away from the trilinear kinks at integers.
    frac = 0.2 + 0.6 * torch.rand(1, 81, 4, 4, 4, dtype=torch.float64)
    whole = torch.randint(-1, 2, (1, 81, 4, 4, 4)).to(torch.float64)
    offset = (whole + frac).requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda a, o, ww, bb: deform_conv3d_depthwise(a, o, ww, bb, 1, 1), (x, offset, w, b), eps=1e-6, atol=1e-5,
        fast_mode=True,
    )


def test_offset_conv_is_unpadded_and_drives_the_sampling() -> None:
    """The module predicts offsets at each output voxel from the input voxel at that position."""
    torch.manual_seed(3)
    m = DeformConvPack3d(3, kernel_size=3).double()
    x = torch.randn(1, 3, 5, 4, 6, dtype=torch.float64)
    # Fresh module: offsets are zero, so it is a plain depthwise conv.
    assert torch.count_nonzero(m.conv_offset.weight) == 0 and torch.count_nonzero(m.conv_offset.bias) == 0
    torch.testing.assert_close(m(x), F.conv3d(x, m.weight, m.bias, padding=1, groups=3))
    with torch.no_grad():
        m.conv_offset.weight.normal_(std=0.3)
        m.conv_offset.bias.uniform_(-0.7, 0.7)
    offset = F.conv3d(x, m.conv_offset.weight, m.conv_offset.bias)  # unpadded: output-sized map
    assert offset.shape[2:] == x.shape[2:]
    got = m(x)
    torch.testing.assert_close(got, deform_conv3d_depthwise(x, offset, m.weight, m.bias, 1, 1))
    assert not torch.allclose(got, F.conv3d(x, m.weight, m.bias, padding=1, groups=3))


def test_bad_offset_shape_is_rejected() -> None:
    with pytest.raises(ValueError, match="offset must have shape"):
        deform_conv3d_depthwise(torch.zeros(1, 2, 4, 4, 4), torch.zeros(1, 81, 6, 6, 6), torch.zeros(2, 1, 3, 3, 3),
                                None, 1, 1)


@pytest.mark.parametrize("dense, name, expected", [
    (False, "deformuxnet", 52_668_758),
    (True, "deformuxnet_densemlp", 55_790_678),
])
def test_paper_config_matches_official_state_dict(dense: bool, name: str, expected: int) -> None:
    params, shapes = _reference(name)
    assert params == expected
    config = {**get_spec("deformuxnet").paper_config, "dense_mlp": dense}
    with torch.device("meta"):
        model = DeformUXNet(in_channels=1, out_channels=14, **config)
    assert count_parameters(model) == params
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours.keys() == shapes.keys()
    assert ours == shapes
    # Official-shaped weights load strictly.
    model.load_state_dict({k: torch.empty(s, device="meta") for k, s in shapes.items()}, strict=True)


def test_registry_default_is_published_variant() -> None:
    spec = get_spec("deformuxnet")
    assert spec.paper_config["dense_mlp"] is False
    with torch.device("meta"):
        model = build_model("deformuxnet", 1, 14)
    assert count_parameters(model) == 52_668_758


def test_small_config_forward_backward() -> None:
    torch.manual_seed(4)
    model = build_model("deformuxnet", in_channels=1, out_channels=3, **get_spec("deformuxnet").small_config)
    model.train()
    x = torch.randn(1, 1, 32, 32, 32)
    y = model(x)
    assert y.shape == (1, 3, 32, 32, 32)
    assert torch.isfinite(y).all()
    y.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert missing == []
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    offset_convs = [m.conv_offset for m in model.modules() if isinstance(m, DeformConvPack3d)]
    assert offset_convs, "no deformable convolutions in the model"
    for conv in offset_convs:
        assert torch.count_nonzero(conv.weight) == 0  # zero-initialised ...
        assert conv.weight.grad.abs().sum() > 0  # ... but it learns
