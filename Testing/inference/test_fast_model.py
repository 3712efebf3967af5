"""The network as inference runs it (lkseg.inference.fast_model): instance norms computed as group norms
and channels-last weights change neither the state dict nor, in float32, the outputs, for every
registered architecture; and channels-last activations stay channels-last through the norm."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

from lkseg.inference.fast_model import GroupInstanceNorm, prepare_for_inference, uses_channels_last
from lkseg.models.registry import build_model, get_spec, list_models

CPU = torch.device("cpu")
#: the registry's networks with their small configurations (the test-only networks have no norms)
NETWORKS = [s.name for s in list_models() if s.small_config]


def test_group_instance_norm_equals_instance_norm_and_keeps_channels_last() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 6, 5, 7, 9) * 3 + 1
    ref = nn.InstanceNorm3d(6, eps=1e-5)(x)
    cl = x.contiguous(memory_format=torch.channels_last_3d)
    out = GroupInstanceNorm(1e-5)(cl)
    assert torch.allclose(out, ref, atol=1e-5)
    assert out.is_contiguous(memory_format=torch.channels_last_3d)


@pytest.mark.parametrize("name", NETWORKS)
def test_prepared_network_has_the_same_state_dict_and_float32_outputs(name: str) -> None:
    torch.manual_seed(1)
    spec = get_spec(name)
    model = build_model(name, 1, 4, **spec.small_config).eval()
    with torch.no_grad():  # non-trivial norms and offsets: perturb every parameter a little
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    ref_model = copy.deepcopy(model)
    keys = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    prepared = prepare_for_inference(model, CPU)
    assert {k: tuple(v.shape) for k, v in prepared.state_dict().items()} == keys
    side = 64 if name == "swinunetr" else 32  # SwinUNETR needs sides of at least 64
    x = torch.randn(1, 1, side, side, side)
    with torch.inference_mode():
        ref = ref_model(x)
        out = prepared(x.contiguous(memory_format=torch.channels_last_3d))
    ref = ref[0] if isinstance(ref, (list, tuple)) else ref
    out = out[0] if isinstance(out, (list, tuple)) else out
    assert torch.allclose(out.float(), ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max())), name


def test_instance_norms_of_the_ux_net_decoder_are_swapped() -> None:
    model = build_model("uxnet", 1, 3, **get_spec("uxnet").small_config)
    before = sum(isinstance(m, nn.InstanceNorm3d) for m in model.modules())
    prepare_for_inference(model, CPU)
    assert before > 0
    assert not any(isinstance(m, nn.InstanceNorm3d) for m in model.modules())
    assert sum(isinstance(m, GroupInstanceNorm) for m in model.modules()) == before


def test_channels_last_on_the_cpu_only_by_default() -> None:
    assert uses_channels_last(CPU)
    assert not uses_channels_last(torch.device("cuda"))
    assert uses_channels_last(torch.device("cuda"), True)
    assert not uses_channels_last(CPU, False)
    model = prepare_for_inference(build_model("segresnet", 1, 3, **get_spec("segresnet").small_config), CPU)
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv3d) and m.kernel_size == (3, 3, 3))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last_3d)
