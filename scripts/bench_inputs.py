"""Inputs of the inference benchmarks: checkpoints of paper-size networks with random weights (as the
speed tables use them) and a CT the size of a clinical one (512 x 512 x 300), made from the example CT.

Imported by ``benchmark_inference.py`` and ``profile_inference.py`` (run as ``python scripts/<name>.py``,
which puts this folder on ``sys.path``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "totalsegmentator-example"
#: the issue's speed volume: the example CT's 30-slice part (122 x 101 x 30 at 3 mm), bundled as the sample
SAMPLE_CT = REPO / "Resources" / "Data" / "sample_ct.nii.gz"


def paper_checkpoint(architecture: str, folder: Path, classes: int = 14, spacing: float = 3.0,
                     roi: int = 96, seed: int = 0) -> Path:
    """A checkpoint of ``architecture`` in its paper configuration with random weights (seeded), a CT card
    with the official pipelines' window, ``spacing`` mm isotropic and ``roi``^3 windows, 4 per batch."""
    import torch

    from lkseg.checkpoint.card import DEFAULT_WINDOW, InferenceSettings, ModelCard, Preprocessing
    from lkseg.checkpoint.labels import BTCV
    from lkseg.checkpoint.native import save_checkpoint
    from lkseg.models.registry import build_model, get_spec

    if classes != BTCV.num_classes:
        raise SystemExit(f"paper checkpoints use the BTCV table ({BTCV.num_classes} classes)")
    torch.manual_seed(seed)
    spec = get_spec(architecture)
    model = build_model(architecture, 1, classes, **spec.paper_config)
    card = ModelCard(architecture, dict(spec.paper_config), 1, BTCV,
                     Preprocessing("RAS", (spacing,) * 3, intensity=dict(DEFAULT_WINDOW)),
                     InferenceSettings((roi,) * 3, 0.5, "gaussian", 4), modality="CT")
    path = folder / f"paper_{architecture}_random.safetensors"
    save_checkpoint(path, model.state_dict(), card)
    return path


def large_ct(path: Path, size: tuple[int, int, int] = (512, 512, 300), fov_mm: tuple[float, float, float] = (400.0, 400.0, 336.0),
             noise_hu: float = 15.0, seed: int = 0) -> Path:
    """A CT of ``size`` voxels (i, j, k) over ``fov_mm``: the example CT (112 slices at 3 mm, or the 30-slice
    sample) resampled trilinearly onto that grid, centred, air (-1024 HU) around it, and Gaussian noise of
    ``noise_hu`` so that it compresses like a real scan. Written as .nii.gz (int16)."""
    import SimpleITK as sitk

    src_path = SHARED / "example_ct.nii.gz"
    src = sitk.ReadImage(str(src_path if src_path.is_file() else SAMPLE_CT))
    spacing = tuple(f / n for f, n in zip(fov_mm, size))
    direction = np.array(src.GetDirection()).reshape(3, 3)
    centre = np.array(src.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in src.GetSize()]))
    origin = centre - direction @ (np.array(spacing) * (np.array(size) - 1) / 2)
    ref = sitk.Image(list(size), sitk.sitkInt16)
    ref.SetSpacing(spacing)
    ref.SetOrigin(origin.tolist())
    ref.SetDirection(src.GetDirection())
    out = sitk.Resample(src, ref, sitk.Transform(), sitk.sitkLinear, -1024, sitk.sitkInt16)
    a = sitk.GetArrayFromImage(out).astype(np.float32)
    a += np.random.default_rng(seed).normal(0.0, noise_hu, a.shape).astype(np.float32)
    noisy = sitk.GetImageFromArray(np.clip(np.round(a), -1024, 3071).astype(np.int16))
    noisy.CopyInformation(out)
    sitk.WriteImage(noisy, str(path), useCompression=True)
    return path
