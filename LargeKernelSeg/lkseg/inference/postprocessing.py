"""Label-map clean-up after inference."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import SimpleITK as sitk


def keep_largest_component(labels: np.ndarray, values: Iterable[int] | None = None,
                           fully_connected: bool = False) -> np.ndarray:
    """Keep, for each label value, only its largest connected component (others become 0).

    ``labels`` is a 3D integer array; ``values`` limits the clean-up to those labels (default:
    every non-zero value present). Components are face-connected unless ``fully_connected``.
    """
    out = labels.copy()
    present = np.unique(labels)
    todo = [int(v) for v in (values if values is not None else present) if int(v) != 0 and int(v) in present]
    for v in todo:
        mask = sitk.GetImageFromArray((labels == v).astype(np.uint8))
        cc = sitk.ConnectedComponent(mask, fully_connected)
        ranked = sitk.GetArrayFromImage(sitk.RelabelComponent(cc, sortByObjectSize=True))
        out[(labels == v) & (ranked != 1)] = 0
    return out
