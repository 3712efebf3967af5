"""MedNeXt (official keys and shapes, MONAI equivalence, deep supervision) and UpKern."""

from __future__ import annotations

import pytest
import torch
from lkseg.errors import LkSegError
from lkseg.models.mednext import (
    MedNeXt,
    lkseg_to_monai,
    monai_to_lkseg,
    official_to_lkseg,
    strip_deep_supervision,
)
from lkseg.models.registry import build_model, count_parameters, get_spec
from lkseg.models.upkern import UpKernError, upkern_from, upkern_state_dict
from reference_shapes import load_reference

CONFIGS = [(size, k, ds) for size in "sbml" for k in (3, 5) for ds in (False, True)]


def _reference(name: str) -> tuple[int, dict[str, tuple[int, ...]]]:
    """(parameter count, {key: shape}) from ``<name>_state_dict.tsv``."""
    params, shapes, _header = load_reference(name)
    return params, shapes


@pytest.mark.parametrize("size, k, ds", CONFIGS, ids=[f"{s}-k{k}-{'ds' if d else 'nods'}" for s, k, d in CONFIGS])
def test_official_state_dict_loads_strictly(size: str, k: int, ds: bool) -> None:
    name = f"mednext_{size}_k{k}" + ("_out14_ds" if ds else "")
    params, shapes = _reference(name)
    with torch.device("meta"):
        model = build_model("mednext", in_channels=1, out_channels=14, size=size.upper(), kernel_size=k,
                            deep_supervision=ds)
    assert count_parameters(model) == params
    assert {key: tuple(v.shape) for key, v in model.state_dict().items()} == shapes
    official = {key: torch.empty(s, device="meta") for key, s in shapes.items()}
    model.load_state_dict(official_to_lkseg(official, deep_supervision=ds), strict=True)


def test_official_training_checkpoint_unwraps() -> None:
    """An nnU-Net checkpoint (DDP prefix, deep-supervision heads) loads into a non-DS model."""
    torch.manual_seed(0)
    trained = MedNeXt(1, 3, size="S", n_channels=8, deep_supervision=True)
    ckpt = {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in trained.state_dict().items()},
            "optimizer_state_dict": {}}
    plain = MedNeXt(1, 3, size="S", n_channels=8, deep_supervision=False)
    plain.load_state_dict(official_to_lkseg(ckpt), strict=True)
    torch.testing.assert_close(plain.stem.weight, trained.stem.weight)
    assert not any(k.startswith("out_1.") for k in strip_deep_supervision(trained.state_dict()))
    with pytest.raises(LkSegError):
        official_to_lkseg({"state_dict": {"a": 1}})


def test_size_s_equals_monai_mednext() -> None:
    """MONAI's MedNeXt equals official S; ours gives identical outputs from the same weights."""
    from monai.networks.nets import MedNeXt as MonaiMedNeXt

    torch.manual_seed(1)
    ref = MonaiMedNeXt(init_filters=8, in_channels=1, out_channels=3, kernel_size=3, use_residual_connection=True,
                       deep_supervision=True)
    ours = MedNeXt(1, 3, size="S", n_channels=8, deep_supervision=True)
    ours.load_state_dict(monai_to_lkseg(ref.state_dict()), strict=True)
    ref.load_state_dict(lkseg_to_monai(ours.state_dict()), strict=True)
    x = torch.randn(1, 1, 32, 32, 32)
    with torch.no_grad():
        want, got = ref.train()(x), ours.train()(x)
        assert isinstance(got, list) and len(got) == len(want) == 5
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        torch.testing.assert_close(ours.eval()(x), ref.eval()(x), rtol=0, atol=0)


def test_size_b_down_blocks_use_next_stage_ratio() -> None:
    """Official B: down_0 expands with exp_r[1] = 3 and down_1 with exp_r[2] = 4 (MONAI: 2 and 3)."""
    with torch.device("meta"):
        model = MedNeXt(1, 14, size="B")
    assert model.down_0.conv2.weight.shape == (3 * 32, 32, 1, 1, 1)
    assert model.down_1.conv2.weight.shape == (4 * 64, 64, 1, 1, 1)
    assert model.enc_block_0[0].conv2.weight.shape == (2 * 32, 32, 1, 1, 1)


def test_deep_supervision_train_list_eval_tensor() -> None:
    torch.manual_seed(2)
    model = MedNeXt(1, 4, size="S", n_channels=8, deep_supervision=True, block_counts=(1,) * 9)
    x = torch.randn(1, 1, 32, 32, 32)
    with torch.no_grad():
        outs = model.train()(x)
        assert [tuple(o.shape) for o in outs] == [(1, 4, 32 // 2 ** i, 32 // 2 ** i, 32 // 2 ** i) for i in range(5)]
        main = model.eval()(x)
    assert isinstance(main, torch.Tensor)
    torch.testing.assert_close(main, outs[0], rtol=0, atol=0)


def test_small_config_forward_backward_and_checkpointing() -> None:
    torch.manual_seed(3)
    config = get_spec("mednext").small_config
    model = build_model("mednext", in_channels=1, out_channels=3, **config).train()
    x = torch.randn(1, 1, 32, 32, 32)
    y = model(x)
    assert y.shape == (1, 3, 32, 32, 32) and torch.isfinite(y).all()
    y.square().mean().backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert [n for n, p in model.named_parameters() if not p.requires_grad] == ["dummy_tensor"]
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for _, p in trainable)
    grads = {n: p.grad.clone() for n, p in trainable}
    # Gradient checkpointing changes memory use, not results.
    ckpt = build_model("mednext", in_channels=1, out_channels=3, checkpointing=True, **config).train()
    ckpt.load_state_dict(model.state_dict())
    y2 = ckpt(x)
    torch.testing.assert_close(y2, y)
    y2.square().mean().backward()
    for n, p in ckpt.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(p.grad, grads[n], rtol=1e-4, atol=1e-6)


def test_bad_hyperparameters_raise_user_errors() -> None:
    with pytest.raises(LkSegError, match="size"):
        MedNeXt(1, 2, size="XL")
    with pytest.raises(LkSegError, match="kernel_size"):
        MedNeXt(1, 2, size="S", kernel_size=4)


# --- UpKern -------------------------------------------------------------------------------

def _upsample_profile_3_to_5(k: torch.Tensor) -> torch.Tensor:
    """Hand-computed separable trilinear 3 -> 5 resize (align_corners=False)."""
    a = torch.tensor([[1.0, 0.0, 0.0], [0.6, 0.4, 0.0], [0.0, 1.0, 0.0], [0.0, 0.4, 0.6], [0.0, 0.0, 1.0]],
                     dtype=k.dtype)
    return torch.einsum("ai,bj,cl,oxijl->oxabc", a, a, a, k)


def test_upkern_k3_to_k5() -> None:
    torch.manual_seed(4)
    small = dict(size="S", n_channels=8, block_counts=(1,) * 9, deep_supervision=True)
    k3 = MedNeXt(1, 3, kernel_size=3, **small)
    with torch.no_grad():  # make every tensor (norms, biases too) distinguishable from a fresh init
        for p in k3.parameters():
            p.add_(torch.randn_like(p))
    k5 = MedNeXt(1, 3, kernel_size=5, **small)
    upkern_from(k3, k5)
    src, dst = k3.state_dict(), k5.state_dict()
    resized = [k for k in src if src[k].shape != dst[k].shape]
    # Exactly the depthwise kernels of every block, down- and up-sampling block.
    assert resized == [k for k in src if k.endswith("conv1.weight")]
    assert len(resized) == 9 + 4 + 4
    for key in src:
        if key in resized:
            assert dst[key].shape[2:] == (5, 5, 5)
            torch.testing.assert_close(dst[key], _upsample_profile_3_to_5(src[key]), rtol=1e-5, atol=1e-6)
        else:
            torch.testing.assert_close(dst[key], src[key], rtol=0, atol=0)
    y = k5.eval()(torch.randn(1, 1, 32, 32, 32))
    assert y.shape == (1, 3, 32, 32, 32) and torch.isfinite(y).all()


def test_upkern_rejects_other_configurations() -> None:
    k3 = MedNeXt(1, 3, size="S", n_channels=8, kernel_size=3, block_counts=(1,) * 9)
    other_width = MedNeXt(1, 3, size="S", n_channels=16, kernel_size=5, block_counts=(1,) * 9)
    with pytest.raises(UpKernError, match="only kernel sizes may differ"):
        upkern_state_dict(k3.state_dict(), other_width)
    with_ds = MedNeXt(1, 3, size="S", n_channels=8, kernel_size=5, block_counts=(1,) * 9, deep_supervision=True)
    with pytest.raises(UpKernError, match="missing"):
        upkern_state_dict(k3.state_dict(), with_ds)
