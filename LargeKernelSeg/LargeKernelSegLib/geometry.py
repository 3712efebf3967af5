"""Volume geometry glue: Slicer's (array, IJKToRAS) pair <-> :class:`lkseg.io.image.Image`.

Slicer keeps a volume's geometry in the node (``GetIJKToRASMatrix``) and its voxels in a
``vtkImageData`` whose own origin/spacing are left at 0/1. These functions take and return plain
numpy arrays and VTK objects from the ``vtk`` wheel, so they are tested without Slicer.
"""

from __future__ import annotations

import numpy as np
from vtkmodules.util.numpy_support import numpy_to_vtk, vtk_to_numpy
from vtkmodules.vtkCommonMath import vtkMatrix4x4
from vtkmodules.vtkCommonDataModel import vtkImageData

from lkseg.io.image import Image


def vtk_matrix_to_numpy(matrix: vtkMatrix4x4) -> np.ndarray:
    """A 4x4 numpy copy of a ``vtkMatrix4x4``."""
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)], dtype=np.float64)


def numpy_to_vtk_matrix(array: np.ndarray) -> vtkMatrix4x4:
    """A new ``vtkMatrix4x4`` holding a 4x4 array."""
    array = np.asarray(array, dtype=np.float64)
    if array.shape != (4, 4):
        raise ValueError(f"expected a 4x4 matrix, got shape {array.shape}")
    matrix = vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(array[r, c]))
    return matrix


def image_from_volume_arrays(array: np.ndarray, ijk_to_ras: vtkMatrix4x4 | np.ndarray) -> Image:
    """An :class:`Image` from ``slicer.util.arrayFromVolume(node)`` and the node's IJKToRAS matrix.

    The array is copied, so the result stays valid when the volume node changes.
    """
    matrix = vtk_matrix_to_numpy(ijk_to_ras) if isinstance(ijk_to_ras, vtkMatrix4x4) else ijk_to_ras
    return Image.from_ijk_to_ras(np.array(array, copy=True), np.asarray(matrix, dtype=np.float64))


def vtk_image_from_array(array: np.ndarray) -> vtkImageData:
    """A ``vtkImageData`` (origin 0, spacing 1, Slicer's convention) holding a copy of a [k, j, i] array."""
    array = np.ascontiguousarray(array)
    if array.ndim != 3:
        raise ValueError(f"expected a 3D array, got shape {array.shape}")
    k, j, i = array.shape
    image = vtkImageData()
    image.SetDimensions(i, j, k)
    image.SetOrigin(0.0, 0.0, 0.0)
    image.SetSpacing(1.0, 1.0, 1.0)
    scalars = numpy_to_vtk(array.ravel(order="C"), deep=True)
    scalars.SetName("ImageScalars")
    image.GetPointData().SetScalars(scalars)
    return image


def array_from_vtk_image(image: vtkImageData) -> np.ndarray:
    """A [k, j, i] numpy copy of a single-component ``vtkImageData``."""
    i, j, k = image.GetDimensions()
    return vtk_to_numpy(image.GetPointData().GetScalars()).reshape(k, j, i).copy()


def labels_to_vtk_image(labels: Image) -> tuple[vtkImageData, vtkMatrix4x4]:
    """Voxels and IJKToRAS matrix of a label map, ready for a ``vtkMRMLLabelMapVolumeNode``.

    Label values are stored as the smallest unsigned integer type that holds them (Slicer's
    segmentation import accepts integer labelmaps only).
    """
    array = np.asarray(labels.array)
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.equal(np.mod(array, 1), 0)):
            raise ValueError("a label map must hold whole numbers")
    if array.size and array.min() < 0:
        raise ValueError("a label map must not hold negative values")
    top = int(array.max()) if array.size else 0
    dtype = np.uint8 if top <= np.iinfo(np.uint8).max else np.uint16 if top <= np.iinfo(np.uint16).max else np.uint32
    return vtk_image_from_array(array.astype(dtype)), numpy_to_vtk_matrix(labels.ijk_to_ras())
