"""Preprocessing as a model card says: the network grid (orientation, spacing, centring) and
resampling by physical coordinates (:mod:`.spatial`), intensity normalisation (:mod:`.intensity`),
and the whole step from an :class:`~lkseg.io.Image` to the network tensor (:mod:`.pipeline`).
Used by inference and training alike."""

from lkseg.preprocessing.intensity import foreground_box, normalise_intensity
from lkseg.preprocessing.pipeline import Preprocessed, preprocess
from lkseg.preprocessing.spatial import (
           Grid,
           crop_grid,
           network_grid,
           resample,
           source_index_of,
)

__all__ = ["Grid", "Preprocessed", "crop_grid", "foreground_box", "network_grid", "normalise_intensity",
           "preprocess", "resample", "source_index_of"]
