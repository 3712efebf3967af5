"""A network whose samples read each other's data (DeformUX-Net in the official offset layout: in a
batch, a window's offsets come partly from its batch mate's map) is run one window at a time, so its
labels do not depend on how many windows a device batches."""

from __future__ import annotations

import numpy as np
import torch

from lkseg.checkpoint.card import InferenceSettings, ModelCard, Preprocessing
from lkseg.checkpoint.labels import BTCV
from lkseg.inference.segmenter import Segmenter
from lkseg.io.image import Image
from lkseg.models.registry import build_model, get_spec


def _official_deformuxnet() -> tuple[torch.nn.Module, ModelCard]:
    torch.manual_seed(3)
    hp = {**get_spec("deformuxnet").small_config, "offset_layout": "official"}
    model = build_model("deformuxnet", 1, BTCV.num_classes, **hp).eval()
    with torch.no_grad():  # trained-like: non-zero offsets and decisive logits
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    card = ModelCard("deformuxnet", hp, 1, BTCV, Preprocessing("RAS", None, intensity={"mode": "none"}),
                     InferenceSettings((32, 32, 32), 0.5, "gaussian", 4))
    return model, card


def test_the_batch_changes_the_networks_output_so_inference_runs_one_window_at_a_time() -> None:
    model, card = _official_deformuxnet()
    x = torch.randn(2, 1, 32, 32, 32)
    with torch.inference_mode():
        alone = model(x[1:])
        batched = model(x)[1:]
    assert not torch.allclose(alone, batched, atol=1e-4)  # window 1 reads window 0's offsets
    image = Image(np.random.default_rng(0).normal(size=(40, 48, 56)).astype(np.float32))
    seg = Segmenter(model, card, "cpu", precision="fp32")
    assert seg.window_batch() == 1
    one = seg.segment(image)
    four = seg.segment(image, sw_batch_size=4)
    assert np.array_equal(one.labels.array, four.labels.array)
    assert any("one window per batch" in n for n in four.notes) and not one.notes
