"""3D UX-Net and the MONAI baselines: official parameter counts and state-dict keys; training runs."""

from __future__ import annotations

import pytest
import torch
from lkseg.errors import LkSegError
from lkseg.models import build_model, count_parameters, get_spec, list_models
from lkseg.models.blocks import InputSizeError
from lkseg.models.uxnet import UXNet
from reference_shapes import load_reference


@pytest.mark.parametrize("name,out", [("uxnet3d", 14), ("uxnet3d_out5", 5), ("uxnet3d_out16", 16)])
def test_uxnet_matches_official_state_dict(name: str, out: int) -> None:
    params, shapes, header = load_reference(name)
    assert f"out_chans={out}" in header
    with torch.device("meta"):
        model = build_model("uxnet", in_channels=1, out_channels=out)
    assert count_parameters(model) == params
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == shapes


def test_official_key_names_load_strictly() -> None:
    _, shapes, _ = load_reference("uxnet3d_out5")
    # A state dict with the official names and shapes, as torch.save(model.state_dict()) writes it.
    official = {k: torch.randn(s) for k, s in shapes.items()}
    model = UXNet(in_channels=1, out_channels=5)
    model.load_state_dict(official, strict=True)
    torch.testing.assert_close(model.uxnet_3d.stages[2][1].dwconv.weight, official["uxnet_3d.stages.2.1.dwconv.weight"])


def test_small_uxnet_forward_backward_reaches_every_parameter() -> None:
    torch.manual_seed(0)
    model = build_model("uxnet", 1, 3, **get_spec("uxnet").small_config)
    x = torch.randn(1, 1, 32, 32, 32)
    y = model(x)
    assert y.shape == (1, 3, 32, 32, 32)
    assert torch.isfinite(y).all()
    y.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert missing == []


def test_block_is_residual_with_layer_scale() -> None:
    # With gamma = 0 the block output is exactly its input (the residual path).
    model = UXNet(1, 2, depths=(1, 1, 1, 1), feat_size=(8, 16, 32, 64), hidden_size=32)
    block = model.uxnet_3d.stages[0][0]
    with torch.no_grad():
        block.gamma.zero_()
    x = torch.randn(1, 8, 8, 8, 8)
    torch.testing.assert_close(block(x), x)
    assert block.dwconv.kernel_size == (7, 7, 7) and block.dwconv.groups == 8
    assert block.pwconv1.groups == 8 and block.pwconv1.out_channels == 32


def test_every_registered_network_runs_its_small_config() -> None:
    for spec in list_models():
        side = 64 if spec.name == "swinunetr" else 32  # SwinUNETR needs sides >= 64 (see baselines.py)
        model = build_model(spec.name, 1, 2, **spec.small_config).eval()
        with torch.no_grad():
            y = model(torch.randn(1, 1, side, side, side))
        y = y[0] if isinstance(y, (list, tuple)) else y
        assert y.shape == (1, 2, side, side, side), spec.name
        assert torch.isfinite(y).all(), spec.name


def test_segresnet_small_config_trains() -> None:
    torch.manual_seed(0)
    model = build_model("segresnet", 1, 3, **get_spec("segresnet").small_config)
    y = model(torch.randn(1, 1, 32, 32, 32))
    assert y.shape == (1, 3, 32, 32, 32) and torch.isfinite(y).all()
    y.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert missing == []


def test_swinunetr_keeps_monai_keys_and_names_too_small_training_patches() -> None:
    from monai.networks.nets import SwinUNETR

    config = get_spec("swinunetr").small_config
    ours = build_model("swinunetr", 1, 3, **config)
    monai_net = SwinUNETR(in_channels=1, out_channels=3, **{"feature_size": 48, **config})
    theirs = {k: tuple(v.shape) for k, v in monai_net.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == theirs
    ours.load_state_dict(monai_net.state_dict(), strict=True)
    # At 32^3 the bottleneck is one voxel, which instance norm cannot normalise.
    with pytest.raises(InputSizeError, match="32x32x32 .*at least 64.*64x64x64"):
        ours(torch.randn(1, 1, 32, 32, 32))
    with pytest.raises(LkSegError, match="multiple of 32.*64x64x64"):
        ours.eval()(torch.randn(1, 1, 64, 64, 48))


def test_uxnet_input_size_and_spatial_dims_are_checked() -> None:
    model = build_model("uxnet", 1, 2, **get_spec("uxnet").small_config)
    with pytest.raises(InputSizeError, match="40x32x33.*multiple of 16.*48x32x48"):
        model(torch.randn(1, 1, 40, 32, 33))
    with pytest.raises(ValueError, match="spatial_dims must be 3"):
        UXNet(1, 2, spatial_dims=2)


def test_unknown_architecture_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="known architectures: .*uxnet"):
        build_model("uxnett")
