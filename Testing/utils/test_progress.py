"""Progress is visible where the output goes: on a pipe, lines with stage, percentage and ETA; the
back-resampling stage reports its own progress."""

from __future__ import annotations

import io

import numpy as np
from lkseg.inference.segmenter import Segmenter
from lkseg.io.image import Image
from lkseg.utils.progress import TerminalProgress


def test_piped_progress_prints_stage_lines_with_an_eta():
    out = io.StringIO()  # not a terminal
    with TerminalProgress(desc="ct", stream=out, every_s=3600) as bar:
        for f, stage in [(0.0, "preprocess"), (0.05, "preprocess"), (0.5, "model"), (0.6, "model"),
                         (0.95, "resample"), (1.0, "done")]:
            bar.update(f, stage)
    lines = out.getvalue().splitlines()
    assert [ln.split()[1] for ln in lines] == ["preprocess", "model", "resample", "done"]  # one per stage
    assert "50%" in lines[1] and "left" in lines[1] and "100%" in lines[-1]


def test_back_resampling_reports_its_own_progress(threshold_card):
    import torch
    from lkseg.inference.back_resampling import labels_on_source
    from lkseg.preprocessing.spatial import Grid

    arr = np.zeros((40, 20, 20), np.float32)
    arr[10:30, 5:15, 5:15] = 1.0
    image = Image(arr, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), np.eye(3))
    model, card = threshold_card(spacing=(2.0, 2.0, 2.0), roi=(16, 16, 16))
    seen = []
    Segmenter(model, card, device="cpu").segment(image, progress=lambda f, s: seen.append((f, s)))
    assert [s for _, s in seen].count("resample") >= 2
    source = Grid.of(image)
    fractions = []
    probs = torch.rand(1, 3, *source.shape)
    labels_on_source(probs, source, source, 3, slab_voxels=400, progress=fractions.append)  # one slice a slab
    assert fractions == [(k + 1) / 40 for k in range(40)]
