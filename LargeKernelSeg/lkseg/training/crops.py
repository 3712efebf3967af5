"""Training data: cases of a :class:`lkseg.dataset.LocalDataset` brought into the network's
space as the model card's preprocessing says, then random foreground-biased crops with light
augmentation (MONAI dictionary transforms).

Each case is preprocessed once, with :mod:`lkseg.preprocessing` (the code inference uses), and
kept in memory (local datasets of corrected cases are small); every training step draws its crops with a random state derived from (seed, rank,
step), so a resumed run draws exactly the crops the uninterrupted run would have drawn.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from lkseg.errors import LkSegError
from lkseg.io.image import Image
from lkseg.training.config import AUGMENT_PROFILES

log = logging.getLogger(__name__)


@dataclass
class Case:
    case_id: str
    image: torch.Tensor  # [1, X, Y, Z] float32, the network grid of lkseg.preprocessing
    label: torch.Tensor  # [1, X, Y, Z] int64 (values of the model's label table)


def preprocess_case(image: Image, labels: Image | None, pre: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Image (and labels) on the network grid, exactly as inference will see the image.

    The image goes through :func:`lkseg.preprocessing.preprocess` (the code inference uses:
    orientation, spacing, intensity, foreground crop); the label map is resampled onto the same
    network grid by physical coordinates with nearest-neighbour interpolation. Returns
    ``(1, X, Y, Z)`` float32 and int64 tensors (the network tensor layout of preprocessing).
    """
    from lkseg import preprocessing

    pp = preprocessing.preprocess(image, pre)
    x = pp.tensor[0].float().contiguous()
    if labels is None:
        return x, None
    lab = torch.from_numpy(np.ascontiguousarray(labels.array, dtype=np.float32))[None, None]
    y = preprocessing.resample(lab, preprocessing.Grid.of(labels), pp.grid, mode="nearest", padding="zeros")
    return x, y[0].round().long().contiguous()


def load_cases(dataset: Any, case_ids: Sequence[str], pre: Any, value_map: dict[int, int] | None = None) -> list[Case]:
    """Read and preprocess cases; ``value_map`` renumbers dataset label values to the model's."""
    cases = []
    for cid in case_ids:
        image, labels = dataset.read_case(cid)
        if value_map:
            lut = np.zeros(max(max(value_map), int(labels.array.max())) + 1, dtype=np.int64)
            for a, b in value_map.items():
                lut[a] = b
            labels = labels.with_array(lut[labels.array.astype(np.int64)])
        x, y = preprocess_case(image, labels, pre)
        cases.append(Case(cid, x, y))
        log.info("case %s: network-space shape %s", cid, tuple(x.shape[1:]))
    return cases


def split_cases(case_ids: list[str], val_cases: Sequence[str] | None, val_fraction: float) -> tuple[list[str], list[str], str]:
    """(train ids, validation ids, note). With one case, or ``val_fraction`` 0, every case is used for
    both, and the note says so; otherwise the last ``val_fraction`` of the cases are held out."""
    if not case_ids:
        raise LkSegError("the dataset has no cases; add some with `lkseg dataset add`")
    if val_cases:
        unknown = [c for c in val_cases if c not in case_ids]
        if unknown:
            raise LkSegError(f"--val-cases {unknown} are not in the dataset (cases: {', '.join(case_ids)})")
        train = [c for c in case_ids if c not in val_cases]
        if not train:
            raise LkSegError("every case is a validation case; leave at least one for training")
        return train, list(val_cases), ""
    if len(case_ids) == 1:
        return list(case_ids), list(case_ids), (
            "the dataset has a single case: validation Dice is measured on the training case itself "
            "and says nothing about generalisation")
    if val_fraction == 0:
        return list(case_ids), list(case_ids), (
            "no case was held out (--val-fraction 0): every case is trained on, and validation Dice is "
            "measured on training cases, so it says nothing about generalisation")
    n_val = max(1, int(round(len(case_ids) * val_fraction)))
    n_val = min(n_val, len(case_ids) - 1)
    return list(case_ids[:-n_val]), list(case_ids[-n_val:]), ""


#: spatial augmentation of a crop (MONAI ``RandAffined``): rotation about the superior axis (the
#: network tensor's Z after RAS orientation) up to 15 degrees, small tilts, scaling +-10 % per axis
ROTATE_RAD = (0.05, 0.05, 0.26)
SCALE = (0.1, 0.1, 0.1)

#: ``strong`` profile, for a dataset of one or a few patients (the bundled CT demo): larger rotations
#: and scaling, a smooth elastic deformation (MONAI ``Rand3DElasticd``: displacement field smoothed
#: with ``ELASTIC_SIGMA`` voxels, magnitude ``ELASTIC_MAGNITUDE`` voxels), and intensity changes a
#: scanner or a patient would make: contrast (gamma), noise, blur.
STRONG_ROTATE_RAD = (0.09, 0.09, 0.35)
STRONG_SCALE = (0.15, 0.15, 0.15)
ELASTIC_SIGMA = (5.0, 7.0)
ELASTIC_MAGNITUDE = (1.0, 3.0)


class CropSampler:
    """Random ``roi`` crops (positive/negative ratio 1:1) with augmentation.

    The volume is padded when it is smaller than the ROI. Augmentation (``augment=True``): a
    random affine (p=0.5; :data:`ROTATE_RAD`, :data:`SCALE`; labels nearest-neighbour), a
    random intensity scale (+-10 %, p=0.5) and shift (+-0.1, p=0.5). No flips: a mirrored
    abdomen puts the liver on the left and swaps paired organs (left/right kidney), so a
    flipped crop teaches the network wrong labels. ``profile="strong"`` widens the affine, adds an
    elastic deformation, gamma contrast, Gaussian noise and blur (see :data:`STRONG_ROTATE_RAD`).
    """

    def __init__(self, cases: list[Case], roi: Sequence[int], augment: bool = True,
                 profile: str = "light") -> None:
        from monai.transforms import (
            Compose,
            FgBgToIndicesd,
            RandCropByPosNegLabeld,
            SpatialPadd,
        )

        if profile not in AUGMENT_PROFILES:
            raise LkSegError(f"unknown augmentation profile {profile!r}: use one of {', '.join(AUGMENT_PROFILES)}")

        self.cases = cases
        self.roi = tuple(int(r) for r in roi)
        pad = SpatialPadd(keys=["image", "label"], spatial_size=self.roi, mode="constant")
        indices = FgBgToIndicesd(keys="label", fg_postfix="_fg", bg_postfix="_bg")
        self._items = []
        for c in cases:
            d = pad({"image": c.image, "label": c.label})
            d = {"image": _plain(d["image"]), "label": _plain(d["label"])}
            self._items.append(indices(d))
        rand = [RandCropByPosNegLabeld(keys=["image", "label"], label_key="label", spatial_size=self.roi,
                                       pos=1.0, neg=1.0, num_samples=1, fg_indices_key="label_fg",
                                       bg_indices_key="label_bg")]
        if augment:
            rand += _augmentations(profile)
        self.transform = Compose(rand)

    def batch(self, batch_size: int, seed: int, rank: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch for ``step``: [B, 1, *roi] image and label, determined by (seed, rank, step)."""
        rs = np.random.RandomState(np.random.SeedSequence([seed, rank, step]).generate_state(1)[0])
        self.transform.set_random_state(state=rs)
        xs, ys = [], []
        for _ in range(batch_size):
            item = self._items[int(rs.randint(len(self._items)))]
            out = self.transform(dict(item))
            out = out[0] if isinstance(out, list) else out
            xs.append(_plain(out["image"]).float())
            ys.append(_plain(out["label"]).long())
        return torch.stack(xs), torch.stack(ys)


def _augmentations(profile: str) -> list:
    """The random transforms after the crop (never a flip: see :class:`CropSampler`)."""
    from monai.transforms import (
        Rand3DElasticd,
        RandAdjustContrastd,
        RandAffined,
        RandGaussianNoised,
        RandGaussianSmoothd,
        RandScaleIntensityd,
        RandShiftIntensityd,
    )

    both, modes = ["image", "label"], ("bilinear", "nearest")
    intensity = [RandScaleIntensityd(keys="image", factors=0.1, prob=0.5),
                 RandShiftIntensityd(keys="image", offsets=0.1, prob=0.5)]
    if profile == "light":
        return [RandAffined(keys=both, prob=0.5, rotate_range=ROTATE_RAD, scale_range=SCALE, mode=modes,
                            padding_mode="border"), *intensity]
    return [Rand3DElasticd(keys=both, sigma_range=ELASTIC_SIGMA, magnitude_range=ELASTIC_MAGNITUDE, prob=0.7,
                           rotate_range=STRONG_ROTATE_RAD, scale_range=STRONG_SCALE, mode=modes,
                           padding_mode="border"),
            *intensity,
            RandAdjustContrastd(keys="image", gamma=(0.7, 1.5), prob=0.3),
            RandGaussianNoised(keys="image", std=0.03, prob=0.2),
            RandGaussianSmoothd(keys="image", sigma_x=(0.5, 1.0), sigma_y=(0.5, 1.0), sigma_z=(0.5, 1.0), prob=0.2)]


def _plain(t: Any) -> torch.Tensor:
    """A plain tensor (MONAI transforms return MetaTensors, which carry metadata we do not need)."""
    return t.as_tensor() if hasattr(t, "as_tensor") else torch.as_tensor(t)
