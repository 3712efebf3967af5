"""Does the image look like what the model was trained on? A CT model on an MR (no air near
-1000 HU), or an MR model on a CT (values near -1000 HU), draws organs that look plausible and are
wrong; the Segmenter puts this warning in its result's notes, which every front end shows."""

from __future__ import annotations

import numpy as np

#: CT air is about -1000 HU; any CT of the trunk has some (lungs, bowel gas, air around the body)
AIR_HU = -800.0
#: a CT with less than this fraction of air voxels, and an MR with more, are called out
AIR_FRACTION = 0.001


def modality_warning(array: np.ndarray, modality: str) -> str | None:
    """A warning when ``array``'s intensities do not fit a model trained on ``modality`` ("CT", "MR ...")."""
    kind = modality.split()[0] if modality else ""
    if kind not in ("CT", "MR"):
        return None
    sample = np.asarray(array)[::2, ::2, ::2]
    sample = sample[np.isfinite(sample)] if np.issubdtype(sample.dtype, np.floating) else sample.ravel()
    if sample.size == 0:
        return None
    air = float(np.mean(sample <= AIR_HU))
    if kind == "CT" and air < AIR_FRACTION:
        return (f"this image has no air near -1000 HU (lowest value {float(sample.min()):g}), so it does not look "
                f"like a CT, but the model was trained on {modality}: check its organs before trusting them "
                "(an MR needs an MR model)")
    if kind == "MR" and air >= AIR_FRACTION:
        return (f"{100 * air:.1f} % of this image lies near -1000 HU, like the air of a CT, but the model was "
                f"trained on {modality}: check its organs before trusting them (a CT needs a CT model)")
    return None
