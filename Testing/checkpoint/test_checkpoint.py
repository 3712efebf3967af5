"""Native checkpoints, model cards, official-weight import and the threshold test network.

Real safetensors / torch.save files in tmp_path; small networks (threshold-test, MedNeXt small).
"""

import json
import os
from contextlib import contextmanager

import pytest
import torch
from lkseg.checkpoint.card import (
    FORMAT_VERSION,
    CheckpointError,
    InferenceSettings,
    ModelCard,
    Preprocessing,
    Provenance,
)
from lkseg.checkpoint.labels import BTCV, FLARE21
from lkseg.checkpoint.native import (
    file_sha256,
    load_checkpoint,
    read_card,
    save_checkpoint,
)
from lkseg.checkpoint.official import import_official
from lkseg.models import build_model, get_spec, list_models
from safetensors.torch import save_file

THRESHOLDS = [0.0, 1.0, 2.0, 3.0]  # FLARE21: 4 labels


def threshold_card(**kw) -> ModelCard:
    return ModelCard(architecture="threshold-test", hyperparameters={"thresholds": THRESHOLDS}, in_channels=1,
                     labels=FLARE21, **kw)


def threshold_state(scale=(1.0, 2.0, 3.0, 4.0, 5.0)):
    return {"scale": torch.tensor(scale)}


@contextmanager
def raises_naming(path, match=None):
    """pytest.raises(CheckpointError) that also checks the message names the file."""
    with pytest.raises(CheckpointError, match=match) as info:
        yield info
    assert os.path.basename(str(path)) in str(info.value)


# --------------------------------------------------------------------------- threshold network
def test_threshold_net_labels_intensity_bands_exactly():
    net = build_model("threshold-test", 1, 5, thresholds=THRESHOLDS)
    x = torch.tensor([-5.0, -0.01, 0.0, 0.99, 1.0, 2.5, 3.0, 100.0]).view(1, 1, 8, 1, 1)
    assert net(x).argmax(1).flatten().tolist() == [0, 0, 1, 1, 2, 3, 4, 4]
    # purely voxel-wise: shifting the input shifts the output
    vol = torch.rand(1, 1, 6, 7, 8) * 5 - 1
    assert torch.equal(net(torch.roll(vol, 2, dims=3)), torch.roll(net(vol), 2, dims=3))
    assert get_spec("threshold-test").hidden and "threshold-test" not in [s.name for s in list_models()]
    with pytest.raises(ValueError, match="out_channels=14"):
        build_model("threshold-test", 1, 14, thresholds=THRESHOLDS)
    with pytest.raises(ValueError, match="increase"):
        build_model("threshold-test", 1, 3, thresholds=[1.0, 0.0])


# --------------------------------------------------------------------------- cards
def test_card_dict_round_trip_and_validation():
    card = ModelCard("threshold-test", {"thresholds": THRESHOLDS, "pair": (1, 2)}, 1, BTCV,
                     Preprocessing(spacing=(1.5, 1.5, 2.0), crop_foreground=True),
                     InferenceSettings(roi_size=(64, 64, 32), overlap=0.25, blend="constant", sw_batch_size=2),
                     Provenance(parent_sha256="ab" * 32, training_data={"dataset": "BTCV", "cases": 24},
                                metrics={"val_dice": 0.81}, notes="test"))
    d = json.loads(json.dumps(card.to_dict()))
    assert ModelCard.from_dict(d) == card
    assert card.out_channels == 14 and card.hyperparameters["pair"] == [1, 2]
    text = card.summary()
    for needle in ("threshold-test", "14 out", "right kidney", "1.5 x 1.5 x 2 mm", "window [-125, 275]",
                   "64 x 64 x 32", "dataset BTCV", "val_dice 0.81", "abab"):
        assert needle in text
    newer = dict(d, format_version=FORMAT_VERSION + 1)
    with pytest.raises(CheckpointError, match="newer .* upgrade lkseg"):
        ModelCard.from_dict(newer)
    with pytest.raises(CheckpointError, match="not an lkseg model card"):
        ModelCard.from_dict(dict(d, format="something-else"))
    with pytest.raises(CheckpointError, match="a_min"):
        ModelCard.from_dict(dict(d, preprocessing={"intensity": {"mode": "window", "a_min": 5, "a_max": 1}}))
    with pytest.raises(CheckpointError, match="overlap"):
        ModelCard.from_dict(dict(d, inference={"overlap": 1.5}))
    with pytest.raises(CheckpointError, match="unknown field"):
        ModelCard.from_dict(dict(d, colour="red"))
    # hand-written import cards: no format fields, labels by built-in name
    short = ModelCard.from_dict({"architecture": "threshold-test", "labels": "flare21"})
    assert short.labels == FLARE21 and short.in_channels == 1


# --------------------------------------------------------------------------- save / load
def test_round_trip_gives_identical_tensors_and_card(tmp_path):
    card = threshold_card(provenance=Provenance(metrics={"val_dice": 0.5}))
    path = save_checkpoint(tmp_path / "sub" / "t.safetensors", threshold_state(), card)
    assert [p.name for p in path.parent.iterdir()] == ["t.safetensors"]  # no temp file left behind
    assert path.stat().st_mode & 0o777 == 0o644
    with pytest.raises(CheckpointError, match="'scale' is a list"):
        save_checkpoint(path, {"scale": [1.0, 2.0]}, card)
    model, loaded = load_checkpoint(path)
    assert loaded == card == read_card(path)
    assert not model.training
    assert torch.equal(model.state_dict()["scale"], threshold_state()["scale"])
    assert len(file_sha256(path)) == 64 and file_sha256(path) == file_sha256(str(path))
    # overwriting replaces the file atomically
    save_checkpoint(path, threshold_state((9.0,) * 5), card)
    assert torch.equal(load_checkpoint(path)[0].scale.detach(), torch.full((5,), 9.0))


def test_round_trip_real_network_with_shared_and_strided_tensors(tmp_path):
    spec = get_spec("mednext")
    net = build_model("mednext", 1, 5, **spec.small_config)
    state = net.state_dict()
    base = torch.arange(10.0)
    card = ModelCard("mednext", dict(spec.small_config), 1, FLARE21)
    path = save_checkpoint(tmp_path / "m.safetensors", state, card)
    model, loaded = load_checkpoint(path)
    for k, v in state.items():
        assert torch.equal(model.state_dict()[k], v), k
    x = torch.randn(1, 1, 32, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), net.eval()(x))
    # views sharing one storage (tied weights) and a non-contiguous view are saved as copies
    shared = {"scale": base[:5], "alias": base[5:], "t": base.view(2, 5).t()}
    other = save_checkpoint(tmp_path / "shared.safetensors", shared, threshold_card())
    from safetensors.torch import load_file
    back = load_file(str(other))
    assert torch.equal(back["t"], base.view(2, 5).t()) and torch.equal(back["alias"], base[5:])


def test_missing_empty_truncated_and_foreign_files_fail_naming_the_file(tmp_path):
    with raises_naming(tmp_path / "nope.safetensors", "does not exist"):
        load_checkpoint(tmp_path / "nope.safetensors")
    good = save_checkpoint(tmp_path / "good.safetensors", threshold_state(), threshold_card())
    data = good.read_bytes()
    for name, blob in [("trunc_end.safetensors", data[:-4]), ("trunc_header.safetensors", data[:40]),
                       ("random.safetensors", os.urandom(300)), ("empty.safetensors", b"")]:
        bad = tmp_path / name
        bad.write_bytes(blob)
        with raises_naming(bad):
            load_checkpoint(bad)
    pth = tmp_path / "official.pth"
    torch.save(threshold_state(), pth)
    with raises_naming(pth, "lkseg import"):
        load_checkpoint(pth)
    with raises_naming(pth, "lkseg import"):
        read_card(pth)


def test_safetensors_without_card_or_with_bad_card(tmp_path):
    plain = tmp_path / "plain.safetensors"
    save_file(threshold_state(), str(plain))
    with raises_naming(plain, "without an lkseg model card"):
        read_card(plain)
    newer = tmp_path / "newer.safetensors"
    d = dict(threshold_card().to_dict(), format_version=FORMAT_VERSION + 1)
    save_file(threshold_state(), str(newer), metadata={"lkseg_card": json.dumps(d)})
    with raises_naming(newer, "upgrade lkseg"):
        load_checkpoint(newer)
    garbled = tmp_path / "garbled.safetensors"
    save_file(threshold_state(), str(garbled), metadata={"lkseg_card": "{oops"})
    with raises_naming(garbled, "not valid JSON"):
        read_card(garbled)


def test_unknown_architecture(tmp_path):
    card = ModelCard("unet-9000", {}, 1, FLARE21)
    path = save_checkpoint(tmp_path / "u.safetensors", threshold_state(), card)
    with raises_naming(path, "unknown architecture 'unet-9000'"):
        load_checkpoint(path)


def test_label_table_disagreeing_with_output_channels(tmp_path):
    # the card says BTCV (14 classes) but the weights were trained for 5 output channels
    card = ModelCard("threshold-test", {"thresholds": [float(t) for t in range(13)]}, 1, BTCV)
    path = save_checkpoint(tmp_path / "mismatch.safetensors", threshold_state(), card)
    with raises_naming(path, "14 classes .* 5 output channels"):
        load_checkpoint(path)
    # the same problem on a real network (MedNeXt output head)
    spec = get_spec("mednext")
    state = build_model("mednext", 1, 5, **spec.small_config).state_dict()
    path = save_checkpoint(tmp_path / "mednext.safetensors", state, ModelCard("mednext", spec.small_config, 1, BTCV))
    with raises_naming(path, "13 labels .*5 output channels"):
        load_checkpoint(path)


def test_missing_unexpected_and_misshapen_weights(tmp_path):
    card = threshold_card()
    cases = {
        "missing.safetensors": ({"other": torch.ones(5)}, "1 missing weight.*scale.*1 unexpected.*other"),
        "extra.safetensors": ({**threshold_state(), "bias": torch.ones(3)}, "unexpected weight.*bias"),
        "shape.safetensors": ({"scale": torch.ones(5, 2)}, r"shape mismatch.*scale: file \[5, 2\], network \[5\]"),
    }
    for name, (state, match) in cases.items():
        path = save_checkpoint(tmp_path / name, state, card)
        with raises_naming(path, match):
            load_checkpoint(path)


# --------------------------------------------------------------------------- import of official weights
class _Evil:
    """Unpickling this would create a file: proves weights_only loading never runs it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_import_nested_prefixed_and_raw_state_dicts(tmp_path):
    card = threshold_card()
    nested = tmp_path / "nested.pth"
    torch.save({"epoch": 7, "state_dict": {"module.scale": torch.tensor([5.0, 4, 3, 2, 1])},
                "best": [0.5, 0.6]}, nested)
    out = import_official(nested, card, tmp_path / "nested.safetensors")
    model, loaded = load_checkpoint(out)
    assert torch.equal(model.scale.detach(), torch.tensor([5.0, 4, 3, 2, 1]))
    assert f"nested.pth (sha256 {file_sha256(nested)})" in loaded.provenance.notes
    assert loaded.labels == FLARE21 and loaded.architecture == "threshold-test"
    for key in ("model", "network_weights", "model_state_dict", "net"):
        src = tmp_path / f"{key}.pt"
        torch.save({key: threshold_state()}, src)
        import_official(src, card, tmp_path / f"{key}.safetensors")
    raw = tmp_path / "raw.pth"
    torch.save(threshold_state(), raw)
    import_official(raw, card, tmp_path / "raw.safetensors")
    with raises_naming(tmp_path / "raw.safetensors", "already exists"):
        import_official(raw, card, tmp_path / "raw.safetensors")
    import_official(raw, card, tmp_path / "raw.safetensors", overwrite=True)


def test_import_refuses_pickled_objects_without_running_them(tmp_path):
    marker = tmp_path / "was_executed"
    evil = tmp_path / "evil.pth"
    torch.save({"state_dict": threshold_state(), "extra": _Evil(str(marker))}, evil)
    with raises_naming(evil, "never unpickles"):
        import_official(evil, threshold_card(), tmp_path / "evil.safetensors")
    assert not marker.exists()
    assert not (tmp_path / "evil.safetensors").exists()


def test_import_errors_name_the_source(tmp_path):
    card = threshold_card()
    with raises_naming(tmp_path / "missing.pth", "do not exist"):
        import_official(tmp_path / "missing.pth", card, tmp_path / "x.safetensors")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"this is not a torch file")
    with raises_naming(junk, "not a readable PyTorch"):
        import_official(junk, card, tmp_path / "x.safetensors")
    wrong = tmp_path / "wrong.pth"
    torch.save({"state_dict": {"scale": torch.ones(5), "conv.weight": torch.ones(2, 2)}}, wrong)
    with raises_naming(wrong, "unexpected weight.*conv.weight"):
        import_official(wrong, card, tmp_path / "x.safetensors")
    nothing = tmp_path / "nothing.pth"
    torch.save({"epoch": 3, "lr": 0.1}, nothing)
    with raises_naming(nothing, "no weights found.*epoch"):
        import_official(nothing, card, tmp_path / "x.safetensors")
    assert not (tmp_path / "x.safetensors").exists()


def test_import_uses_the_architecture_key_mapping(tmp_path):
    # official MedNeXt checkpoints are nnU-Net dicts that always carry deep-supervision heads
    spec = get_spec("mednext")
    official = build_model("mednext", 1, 5, **{**spec.small_config, "deep_supervision": True})
    src = tmp_path / "mednext_official.model"
    torch.save({"state_dict": {f"module.{k}": v for k, v in official.state_dict().items()},
                "optimizer_state_dict": {}, "epoch": 1}, src)
    card = ModelCard("mednext", dict(spec.small_config), 1, FLARE21)  # deep_supervision False (paper config)
    model, _ = load_checkpoint(import_official(src, card, tmp_path / "m.safetensors"))
    assert not any(k.startswith("out_1.") for k in model.state_dict())
    for k, v in model.state_dict().items():
        assert torch.equal(v, official.state_dict()[k]), k


def test_import_official_uxnet_with_wrong_label_table(tmp_path):
    # 3D UX-Net (small configuration) trained for 4 organs, saved the way training scripts do
    spec = get_spec("uxnet")
    net = build_model("uxnet", 1, 5, **spec.small_config)
    src = tmp_path / "uxnet_flare.pth"
    torch.save({"model": {f"module.{k}": v for k, v in net.state_dict().items()}}, src)
    out = import_official(src, ModelCard("uxnet", dict(spec.small_config), 1, FLARE21), tmp_path / "ux.safetensors")
    model, _ = load_checkpoint(out)
    x = torch.randn(1, 1, 32, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), net.eval()(x), atol=1e-5)
    with raises_naming(src, "13 labels .*5 output channels"):
        import_official(src, ModelCard("uxnet", dict(spec.small_config), 1, BTCV), tmp_path / "bad.safetensors")
    assert not (tmp_path / "bad.safetensors").exists()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_load_onto_gpu(tmp_path):
    path = save_checkpoint(tmp_path / "g.safetensors", threshold_state(), threshold_card())
    model, _ = load_checkpoint(path, device="auto")
    assert model.scale.device.type == "cuda"
    x = torch.tensor([-1.0, 0.5, 1.5, 2.5, 3.5], device="cuda").view(1, 1, 5, 1, 1)
    assert model(x).argmax(1).flatten().tolist() == [0, 1, 2, 3, 4]


def test_official_repuxnet_weights_import_in_deploy_form(tmp_path):
    """Official RepUX-Net .pth files hold the weights the network convolves with; importing
    them must not apply the Bayesian frequency matrix a second time."""
    from lkseg.models.repuxnet import RepUXNet

    config = {"depths": (1, 1, 1, 1), "feat_size": (8, 16, 32, 64), "hidden_size": 32, "kernel_size": 5}
    torch.manual_seed(0)
    official = RepUXNet(1, 5, deploy=True, **config).eval()
    src = tmp_path / "repux_official.pth"
    torch.save(official.state_dict(), src)
    out = import_official(src, ModelCard("repuxnet", dict(config), 1, FLARE21), tmp_path / "repux.safetensors")
    model, card = load_checkpoint(out)
    assert card.hyperparameters["deploy"] is True
    x = torch.randn(1, 1, 32, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), official(x))
    # A card that says otherwise is respected.
    out2 = import_official(src, ModelCard("repuxnet", {**config, "deploy": False}, 1, FLARE21),
                           tmp_path / "repux_raw.safetensors")
    assert read_card(out2).hyperparameters["deploy"] is False
