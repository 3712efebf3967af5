"""Images in and results out: the :class:`Image` type (voxels plus full geometry), reading NIfTI,
NRRD, MHA and DICOM series, writing images and label maps (NIfTI, ``.seg.nrrd``, NRRD, MHA),
organ volume tables and overlay PNGs.

Stable entry points: ``lkseg.io.Image``, ``lkseg.io.read_image``, ``lkseg.io.write_image``,
``lkseg.io.write_labels``.
"""

from lkseg.io.export import organ_volumes, overlay_png, write_labels, write_volumes
from lkseg.io.image import Image
from lkseg.io.imageio import ImageReadError, read_image, write_image

__all__ = ["Image", "ImageReadError", "organ_volumes", "overlay_png", "read_image", "write_image", "write_labels",
           "write_volumes"]
