"""RepUX-Net: official parameter counts/keys, the Bayesian frequency matrix as a true
re-parameterization, and folding into a plain depthwise conv."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from lkseg.models import build_model, count_parameters
from lkseg.models.repuxnet import RepUXBlock, RepUXNet, bayesian_frequency_matrix
from reference_shapes import load_reference


@pytest.mark.parametrize("name,out", [("repuxnet", 14), ("repuxnet_k21_out16", 16)])
def test_repuxnet_matches_official_state_dict(name: str, out: int) -> None:
    params, shapes, header = load_reference(name)
    assert f"out_chans={out}" in header and "ks=21" in header
    with torch.device("meta"):
        model = build_model("repuxnet", in_channels=1, out_channels=out)
    assert count_parameters(model) == params
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == shapes


@pytest.mark.parametrize("k,alpha", [(21, 1.0), (5, 2.5)])
def test_bfm_is_alpha_over_distance_plus_alpha(k: int, alpha: float) -> None:
    table = bayesian_frequency_matrix(k, alpha)
    c = k // 2
    for i in range(k):
        for j in range(k):
            for m in range(k):
                d = math.dist((i, j, m), (c, c, c))
                assert abs(table[i, j, m].item() - alpha / (d + alpha)) < 1e-6
    assert table[c, c, c].item() == 1.0


def test_optimizer_updates_raw_weight_without_compounding(monkeypatch: pytest.MonkeyPatch) -> None:
    # the hand-made reference below convolves with F.conv3d; the block must too (its FFT path, which CPU
    # training takes, is compared with F.conv3d in test_depthwise.py)
    monkeypatch.setenv("LKSEG_DWCONV", "direct")
    torch.manual_seed(0)
    block = RepUXBlock(dim=2, kernel_size=5, alpha=1.0)
    x = torch.randn(1, 2, 6, 6, 6)
    lr = 0.1
    opt = torch.optim.SGD(block.parameters(), lr=lr)
    table = bayesian_frequency_matrix(5, 1.0)
    expected = block.dwconv.weight.detach().clone()
    for _ in range(3):
        opt.zero_grad()
        # The gradient of the loss w.r.t. the raw weight, computed independently:
        # d loss / d w = (d loss / d w_eff) * table.
        w_eff = (expected * table).requires_grad_(True)
        conv = block.dwconv
        ref = F.conv3d(x, w_eff, conv.bias.detach(), conv.stride, conv.padding, 1, conv.groups)
        ref = block.act(F.batch_norm(ref, None, None, block.norm.weight.detach(), block.norm.bias.detach(), True))
        ref.sum().backward()
        expected = expected - lr * w_eff.grad * table
        block(x).sum().backward()
        opt.step()
        torch.testing.assert_close(block.dwconv.weight.detach(), expected, rtol=1e-5, atol=1e-6)
    # The stored weight is w_k, not w_k times the table k times.
    assert not torch.allclose(block.dwconv.weight.detach(), expected * table ** 3)


def test_fold_gives_the_training_mode_output() -> None:
    torch.manual_seed(1)
    model = RepUXNet(1, 3, depths=(1, 1, 1, 1), feat_size=(8, 16, 32, 64), hidden_size=32, kernel_size=7)
    x = torch.randn(2, 1, 32, 32, 32)
    model.train()
    model(x)  # update the BatchNorm running statistics once
    model.eval()
    with torch.no_grad():
        before = model(x)
        raw = model.repuxnet_3d.stages[0][0].dwconv.weight.clone()
        model.fold()
        after = model(x)
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-5)
    folded = model.repuxnet_3d.stages[0][0].dwconv.weight
    torch.testing.assert_close(folded, raw * bayesian_frequency_matrix(7, 1.0))
    # A folded state dict loads into a deploy-mode network and gives the same output.
    deploy = RepUXNet(1, 3, depths=(1, 1, 1, 1), feat_size=(8, 16, 32, 64), hidden_size=32, kernel_size=7,
                      deploy=True).eval()
    deploy.load_state_dict(model.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(deploy(x), before, rtol=1e-4, atol=1e-5)


def test_small_repuxnet_trains() -> None:
    torch.manual_seed(0)
    model = RepUXNet(1, 2, depths=(1, 1, 1, 1), feat_size=(8, 16, 32, 64), hidden_size=32, kernel_size=7)
    y = model(torch.randn(2, 1, 32, 32, 32))
    assert y.shape == (2, 2, 32, 32, 32) and torch.isfinite(y).all()
    y.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert missing == []


def test_adamw_steps_update_the_raw_weight_as_a_hand_written_adamw_does() -> None:
    # AdamW on w with the chain-rule gradient (d loss / d w_eff) * table, written out by hand:
    # nothing compounds between steps, the stored weight is the optimizer's w_k.
    torch.manual_seed(2)
    block = RepUXBlock(dim=2, kernel_size=5, alpha=1.0)
    x = torch.randn(1, 2, 6, 6, 6)
    lr, b1, b2, eps, wd = 0.01, 0.9, 0.999, 1e-8, 0.05
    opt = torch.optim.AdamW([block.dwconv.weight], lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd)
    table = bayesian_frequency_matrix(5, 1.0)
    w = block.dwconv.weight.detach().clone().double()
    m = torch.zeros_like(w)
    v = torch.zeros_like(w)
    conv = block.dwconv
    for t in range(1, 5):
        w_eff = (w.float() * table).requires_grad_(True)
        ref = F.conv3d(x, w_eff, conv.bias.detach(), conv.stride, conv.padding, 1, conv.groups)
        ref = block.act(F.batch_norm(ref, None, None, block.norm.weight.detach(), block.norm.bias.detach(), True))
        ref.square().mean().backward()
        g = (w_eff.grad * table).double()
        w = w * (1 - lr * wd)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        w = w - lr * (m / (1 - b1 ** t)) / ((v / (1 - b2 ** t)).sqrt() + eps)
        opt.zero_grad()
        block(x).square().mean().backward()
        opt.step()
        torch.testing.assert_close(block.dwconv.weight.detach().double(), w, rtol=1e-4, atol=1e-6)


def test_bfm_is_not_in_the_state_dict_and_deploy_uses_weights_as_they_are() -> None:
    torch.manual_seed(3)
    block = RepUXBlock(dim=3, kernel_size=5, deploy=True).eval()
    assert "bfm" not in block.state_dict()
    assert set(block.state_dict()) == {"dwconv.weight", "dwconv.bias", "norm.weight", "norm.bias",
                                       "norm.running_mean", "norm.running_var", "norm.num_batches_tracked"}
    x = torch.randn(1, 3, 7, 7, 7)
    with torch.no_grad():
        expected = block.act(block.norm(block.dwconv(x)))  # the plain nn.Conv3d, no table
        torch.testing.assert_close(block(x), expected)
        weight = block.dwconv.weight.clone()
        block.fold()  # already folded: a no-op
    torch.testing.assert_close(block.dwconv.weight, weight)
