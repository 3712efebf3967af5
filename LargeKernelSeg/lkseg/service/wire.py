"""How volumes travel between the worker and its client: uncompressed ``.npz`` files holding the
array and its geometry (written atomically), or any image file the readers know."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from lkseg.io.image import Image
from lkseg.utils.atomic import atomic_path

log = logging.getLogger(__name__)


#: suffix of the uncompressed array + geometry files the client writes (no compression cost)
NPZ_SUFFIX = ".npz"


def read_npz(path: str | Path) -> Image:
    """An :class:`Image` from an ``.npz`` with ``array``, ``spacing``, ``origin``, ``direction``."""
    with np.load(path, allow_pickle=False) as data:
        return Image(data["array"], tuple(data["spacing"].tolist()), tuple(data["origin"].tolist()),
                     data["direction"])


def write_npz(image: Image, path: str | Path) -> Path:
    """Write ``image`` uncompressed (atomic: temporary name in the same folder, then rename)."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, array=np.ascontiguousarray(image.array), spacing=np.asarray(image.spacing, float),
                 origin=np.asarray(image.origin, float), direction=np.asarray(image.direction, float))
    return path


def read_volume(path: str | Path) -> Image:
    if str(path).endswith(NPZ_SUFFIX):
        return read_npz(path)
    from lkseg.io.imageio import read_image

    return read_image(path)


def write_volume(image: Image, path: str | Path) -> Path:
    if str(path).endswith(NPZ_SUFFIX):
        return write_npz(image, path)
    from lkseg.io.imageio import write_image

    return write_image(image, path)
