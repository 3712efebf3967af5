"""DeformUX-Net offset layouts (issue #15): ``official`` reproduces the official CUDA operator, which
pads the 1x1x1 offset conv and reads the larger map as if it were output-sized (docs/deformuxnet_offsets.md).

The reference below is a transcription of the official op's indexing and sampling
(``deform_im2col_cuda.cuh`` at MASILab/deform-uxnet b2bfad7), written independently of lkseg's
code: flat offset index ``q*S*P + r*3T*V + (3t+a)*V + s``, and trilinear sampling with an
explicit validity rule and zero corners, no ``grid_sample``."""

from __future__ import annotations

import copy
import json
import math
import types
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from lkseg.checkpoint.card import CheckpointError, ModelCard
from lkseg.checkpoint.native import load_checkpoint, read_card, save_checkpoint
from lkseg.cli import main
from lkseg.errors import LkSegError
from lkseg.models.deform_conv import DeformConvPack3d, official_offsets
from lkseg.models.deformuxnet import DeformUXNet
from lkseg.models.registry import build_model, get_spec

SMALL = get_spec("deformuxnet").small_config
SMALL_JSON = json.loads(json.dumps(SMALL))  # as a card holds it (lists)
#: the smallest input with more than one voxel at 1/16 scale (instance norm needs two): 32 x 16 x 16


# ----------------------------------------------------------------------------- the reference
def _trilinear_zero(img: torch.Tensor, pd: torch.Tensor, ph: torch.Tensor, pw: torch.Tensor) -> torch.Tensor:
    """``img`` [C, D, H, W] at positions [V] (as the official im2col: 0 unless -1 < p < size on every
    axis, corners outside the volume count as 0)."""
    _, depth, height, width = img.shape
    inside = (pd > -1) & (ph > -1) & (pw > -1) & (pd < depth) & (ph < height) & (pw < width)
    d0, h0, w0 = pd.floor(), ph.floor(), pw.floor()
    ld, lh, lw = pd - d0, ph - h0, pw - w0
    val = torch.zeros(img.shape[0], pd.numel(), dtype=img.dtype)
    for dz, wz in ((0, 1 - ld), (1, ld)):
        for dy, wy in ((0, 1 - lh), (1, lh)):
            for dx, wx in ((0, 1 - lw), (1, lw)):
                z, y, x = (d0 + dz).long(), (h0 + dy).long(), (w0 + dx).long()
                ok = inside & (z >= 0) & (z < depth) & (y >= 0) & (y < height) & (x >= 0) & (x < width)
                v = img[:, z.clamp(0, depth - 1), y.clamp(0, height - 1), x.clamp(0, width - 1)]
                val += torch.where(ok, wz * wy * wx, torch.zeros_like(wz)) * v
    return val


def official_op_reference(x: torch.Tensor, conv_offset_weight: torch.Tensor, conv_offset_bias: torch.Tensor,
                          weight: torch.Tensor, bias: torch.Tensor, pad: int, im2col_step: int = 64) -> torch.Tensor:
    """The official ``DeformConvPack`` forward (stride 1, dilation 1): padded 1x1x1 offset conv, then the
    CUDA op's flat reading of that buffer, sample by sample and tap by tap."""
    n, c, depth, height, width = x.shape
    k = weight.shape[-1]
    taps = k ** 3
    buffer = F.conv3d(x, conv_offset_weight, conv_offset_bias, padding=pad)  # the padded offset map
    flat = buffer.reshape(-1)
    per_sample = buffer[0].numel()  # per_offset_size: the padded size
    od, oh, ow = depth + 2 * pad - k + 1, height + 2 * pad - k + 1, width + 2 * pad - k + 1
    vol = od * oh * ow
    chunk = min(n, im2col_step)
    assert n % chunk == 0, "the official op refuses this batch"
    s = torch.arange(vol)
    vd, vh, vw = s // (oh * ow), (s // ow) % oh, s % ow
    out = torch.zeros(n, c, vol, dtype=x.dtype)
    for b in range(n):
        q, r = divmod(b, chunk)
        base = q * chunk * per_sample + r * 3 * taps * vol
        for t in range(taps):
            i, j, l = t // (k * k), (t // k) % k, t % k
            off = [flat[base + (3 * t + a) * vol + s] for a in range(3)]
            val = _trilinear_zero(x[b], vd - pad + i + off[0], vh - pad + j + off[1], vw - pad + l + off[2])
            out[b] += weight[:, 0, i, j, l].view(c, 1) * val
    return (out + bias.view(1, c, 1)).view(n, c, od, oh, ow)


def _use_reference(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` whose deformable convs run :func:`official_op_reference` on the same weights."""
    ref = copy.deepcopy(model)
    for m in ref.modules():
        if isinstance(m, DeformConvPack3d):
            m.forward = types.MethodType(lambda self, x: official_op_reference(
                x, self.conv_offset.weight, self.conv_offset.bias, self.weight, self.bias, self.padding[0]), m)
    return ref


def _trained_like(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-zero offset convs (offsets of about a voxel) and layer scales of 1, as trained weights have:
    with the initial 1e-6 layer scale the blocks would hardly touch the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, DeformConvPack3d):
                w = m.conv_offset.weight
                w.copy_(torch.randn(w.shape, generator=g, dtype=w.dtype) * 0.8 / math.sqrt(m.channels))
                m.conv_offset.bias.copy_(torch.randn(m.conv_offset.bias.shape, generator=g, dtype=w.dtype) * 0.5)
            if getattr(m, "gamma", None) is not None:
                m.gamma.fill_(1.0)
    return model


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).detach().abs().max() / b.detach().abs().max())


# ----------------------------------------------------------------------------- the buffer reading
@pytest.mark.parametrize("n, step", [(1, 64), (3, 64), (6, 3), (4, 2), (5, 2)])
def test_official_offsets_read_the_flat_buffer_like_the_cuda_op(n: int, step: int) -> None:
    """Element by element: chunk q of S samples starts at q*S*P, sample r of a chunk at r*3T*V.
    (5, 2) is refused by the official op; lkseg then ends with a shorter chunk.)"""
    torch.manual_seed(0)
    out_size, ch = (2, 3, 2), 6
    buffer = torch.randn(n, ch, 4, 5, 4)
    got = official_offsets(buffer, out_size, im2col_step=step)
    flat, per, vol = buffer.reshape(-1).tolist(), buffer[0].numel(), math.prod(out_size)
    chunk = min(n, step)
    assert got.shape == (n, ch, *out_size)
    values = got.reshape(n, ch, vol)
    for b in range(n):
        q, r = divmod(b, chunk)
        for c in range(ch):
            for s in range(vol):
                assert values[b, c, s].item() == flat[q * chunk * per + r * ch * vol + c * vol + s]


def test_official_offsets_refuse_a_map_smaller_than_the_output() -> None:
    with pytest.raises(ValueError, match="smaller than the output"):
        official_offsets(torch.zeros(1, 3, 2, 2, 2), (3, 3, 3))


# ----------------------------------------------------------------------------- the module and the network
def test_official_pack_matches_the_reference_and_depends_on_the_batch() -> None:
    """Batch 3 (one chunk): sample r reads at an output-sized stride, partly from sample r-1's map."""
    torch.manual_seed(1)
    m = _trained_like(DeformConvPack3d(3, 3, offset_layout="official").double())
    native = DeformConvPack3d(3, 3).double()
    native.load_state_dict(m.state_dict())
    x = torch.randn(3, 3, 4, 5, 3, dtype=torch.float64)
    want = official_op_reference(x, m.conv_offset.weight, m.conv_offset.bias, m.weight, m.bias, 1)
    got = m(x)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    assert _rel(native(x), want) > 1e-2  # the layouts really differ
    # Sample 1 alone reads only its own map: another result than inside the batch.
    assert _rel(m(x[1:2]), got[1:2]) > 1e-2
    torch.testing.assert_close(native(x[1:2]), native(x)[1:2])  # native: no such dependence


def test_layouts_share_state_dict_shapes_and_agree_while_offsets_are_zero() -> None:
    torch.manual_seed(2)
    native = build_model("deformuxnet", 1, 3, **SMALL).eval()
    official = build_model("deformuxnet", 1, 3, **SMALL, offset_layout="official").eval()
    assert {k: v.shape for k, v in native.state_dict().items()} == \
        {k: v.shape for k, v in official.state_dict().items()}
    official.load_state_dict(native.state_dict(), strict=True)
    x = torch.randn(2, 1, 32, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(official(x), native(x), rtol=0, atol=0)


def test_small_official_network_reproduces_the_official_op_in_a_batch() -> None:
    """The whole small DeformUX-Net with trained-like offset convs, batch 2, float64."""
    torch.manual_seed(3)
    model = _trained_like(build_model("deformuxnet", 1, 3, **SMALL, offset_layout="official")).double().eval()
    x = torch.randn(2, 1, 32, 16, 16, dtype=torch.float64)
    with torch.no_grad():
        want, got = _use_reference(model)(x), model(x)
    assert _rel(got, want) < 1e-10


def test_gradients_of_the_official_layout() -> None:
    torch.manual_seed(4)
    m = _trained_like(DeformConvPack3d(2, 3, offset_layout="official").double(), seed=4)
    params = dict(m.named_parameters())
    x = torch.randn(2, 2, 3, 3, 3, dtype=torch.float64, requires_grad=True)

    def f(x, w_off, b_off, w, b):
        return torch.func.functional_call(m, {"conv_offset.weight": w_off, "conv_offset.bias": b_off,
                                              "weight": w, "bias": b}, (x,))

    inputs = (x, *(params[k].detach().clone().requires_grad_(True)
                   for k in ("conv_offset.weight", "conv_offset.bias", "weight", "bias")))
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-5, fast_mode=True)
    # The padded border of the offset map holds only the bias; its gradient reaches the bias.
    f(*inputs).square().sum().backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in inputs)


def test_bad_layouts_are_refused_with_what_to_choose() -> None:
    with pytest.raises(LkSegError, match="'native' .*'official'.*got 'padded'"):
        DeformUXNet(offset_layout="padded")
    card = ModelCard.from_dict({"architecture": "deformuxnet", "labels": "flare21",
                                "hyperparameters": {**SMALL, "offset_layout": "Official"}})
    from lkseg.checkpoint.native import build_from_card

    with pytest.raises(CheckpointError, match="offset_layout must be 'native'"):
        build_from_card(card)


# ----------------------------------------------------------------------------- import, info, training
def _official_weights(tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    """An "official" .pth: a trained-like state dict under the official key names (ours equal them)."""
    torch.manual_seed(5)
    model = _trained_like(build_model("deformuxnet", 1, 5, **SMALL, offset_layout="official"), seed=5).eval()
    src = tmp_path / "deformuxnet_official.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, src)
    return src, model


def test_lkseg_import_sets_the_official_layout_and_reproduces_the_official_op(tmp_path: Path, capsys) -> None:
    src, model = _official_weights(tmp_path)
    card = tmp_path / "card.json"
    card.write_text(json.dumps({"architecture": "deformuxnet", "labels": "flare21",
                                "hyperparameters": SMALL_JSON}))
    out = tmp_path / "imported.safetensors"
    assert main(["import", str(src), "--card", str(card), "-o", str(out)]) == 0
    assert read_card(out).hyperparameters["offset_layout"] == "official"
    loaded, _ = load_checkpoint(out)
    assert loaded.offset_layout == "official"
    native = build_model("deformuxnet", 1, 5, **SMALL).eval()
    native.load_state_dict(loaded.state_dict())
    x = torch.randn(2, 1, 32, 16, 16)
    with torch.no_grad():
        want, got = _use_reference(model)(x), loaded(x)
        assert _rel(got, want) < 1e-4  # the "done": within 1e-4 relative
        assert _rel(native(x), want) > 1e-2  # what the unpadded layout would give instead
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    assert "Offset layout:  official" in capsys.readouterr().out


def test_import_keeps_the_layout_a_card_asks_for(tmp_path: Path) -> None:
    src, _ = _official_weights(tmp_path)
    out = tmp_path / "native.safetensors"
    assert main(["import", str(src), "--architecture", "deformuxnet", "--labels", "flare21",
                 *[f"--hp={k}={json.dumps(v)}" for k, v in SMALL.items()], "--hp", "offset_layout=native",
                 "-o", str(out)]) == 0
    assert read_card(out).hyperparameters["offset_layout"] == "native"
    assert load_checkpoint(out)[0].offset_layout == "native"


def test_a_card_without_the_field_means_native(tmp_path: Path, capsys) -> None:
    model = build_model("deformuxnet", 1, 5, **SMALL)
    card = ModelCard.from_dict({"architecture": "deformuxnet", "labels": "flare21",
                                "hyperparameters": SMALL_JSON})
    path = save_checkpoint(tmp_path / "old.safetensors", model.state_dict(), card)
    assert load_checkpoint(path)[0].offset_layout == "native"
    assert main(["info", str(path)]) == 0
    assert "Offset layout:  native" in capsys.readouterr().out


def test_training_writes_native_and_fine_tuning_keeps_the_layout(tmp_path: Path) -> None:
    """The training run's model set-up: a new network's card says native; a checkpoint's layout stays."""
    from lkseg.training.run import Run

    def built(**cfg):
        run = Run.__new__(Run)
        run.cfg = types.SimpleNamespace(**{"checkpoint": None, "architecture": "deformuxnet", "upkern_from": None,
                                           "labels": "flare21", "model_config": "small", "hparams": {},
                                           "spacing": None, "intensity": None, "roi": None, **cfg})
        run.device = torch.device("cpu")
        run._build_model()
        return run

    fresh = built()
    assert fresh.card.hyperparameters["offset_layout"] == "native" and fresh.model.offset_layout == "native"
    src, _ = _official_weights(tmp_path)
    imported = tmp_path / "imported.safetensors"
    assert main(["import", str(src), "--architecture", "deformuxnet", "--labels", "flare21",
                 *[f"--hp={k}={json.dumps(v)}" for k, v in SMALL.items()], "-o", str(imported)]) == 0
    tuned = built(checkpoint=imported, architecture=None)
    assert tuned.card.hyperparameters["offset_layout"] == "official" and tuned.model.offset_layout == "official"
