"""The internal image type: voxels plus their full physical geometry.

Conventions (the same as SimpleITK/ITK):

* ``array`` is indexed ``[k, j, i]`` (slowest axis first), which is the numpy order of both
  ``SimpleITK.GetArrayFromImage`` and Slicer's ``arrayFromVolume``.
* ``spacing`` is ``(si, sj, sk)`` in millimetres, ``origin`` is the LPS position (mm) of the
  centre of voxel ``(0, 0, 0)``, and ``direction`` is a 3x3 matrix whose *columns* are the
  LPS unit vectors of the i, j and k axes.

Slicer hands volumes over as an array plus an IJK->RAS matrix; :meth:`Image.from_ijk_to_ras`
and :meth:`Image.ijk_to_ras` convert both ways, so every front end maps to this one type.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass
class Image:
    array: np.ndarray
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))

    def __post_init__(self) -> None:
        if self.array.ndim != 3:
            raise ValueError(f"an Image holds a 3D array, got shape {self.array.shape}")
        self.spacing = tuple(float(s) for s in self.spacing)
        self.origin = tuple(float(o) for o in self.origin)
        self.direction = np.asarray(self.direction, dtype=np.float64).reshape(3, 3)
        if any(s <= 0 for s in self.spacing):
            raise ValueError(f"spacing must be positive, got {self.spacing}")

    @property
    def size_ijk(self) -> tuple[int, int, int]:
        """Number of voxels along i, j, k (ITK order; the reverse of ``array.shape``)."""
        k, j, i = self.array.shape
        return (i, j, k)

    def ijk_to_lps(self) -> np.ndarray:
        """4x4 matrix mapping voxel indices (i, j, k, 1) to LPS millimetres."""
        m = np.eye(4)
        m[:3, :3] = self.direction @ np.diag(self.spacing)
        m[:3, 3] = self.origin
        return m

    def ijk_to_ras(self) -> np.ndarray:
        """4x4 matrix mapping voxel indices (i, j, k, 1) to RAS millimetres (Slicer's convention)."""
        return LPS_TO_RAS @ self.ijk_to_lps()

    @classmethod
    def from_ijk_to_lps(cls, array: np.ndarray, matrix: np.ndarray) -> "Image":
        matrix = np.asarray(matrix, dtype=np.float64)
        linear = matrix[:3, :3]
        spacing = np.linalg.norm(linear, axis=0)
        if np.any(spacing <= 0):
            raise ValueError("the IJK matrix has a zero-length axis")
        return cls(array, tuple(spacing), tuple(matrix[:3, 3]), linear / spacing)

    @classmethod
    def from_ijk_to_ras(cls, array: np.ndarray, matrix: np.ndarray) -> "Image":
        """Build an Image from Slicer's view of a volume: ``arrayFromVolume`` plus IJKToRAS."""
        return cls.from_ijk_to_lps(array, LPS_TO_RAS @ np.asarray(matrix, dtype=np.float64))

    def with_array(self, array: np.ndarray) -> "Image":
        """A new Image on the same grid holding ``array`` (same shape required)."""
        if array.shape != self.array.shape:
            raise ValueError(f"shape {array.shape} does not match the grid {self.array.shape}")
        return Image(array, self.spacing, self.origin, self.direction.copy())

    def same_grid(self, other: "Image", atol: float = 1e-4) -> bool:
        """True when ``other`` has the same voxel grid (shape, spacing, origin, direction)."""
        return (
            self.array.shape == other.array.shape
            and np.allclose(self.ijk_to_lps(), other.ijk_to_lps(), atol=atol)
        )

    def index_to_physical(self, ijk: np.ndarray) -> np.ndarray:
        """Map an (N, 3) array of (i, j, k) indices to (N, 3) LPS points."""
        ijk = np.atleast_2d(np.asarray(ijk, dtype=np.float64))
        return ijk @ (self.direction @ np.diag(self.spacing)).T + np.asarray(self.origin)

    def physical_to_index(self, points: np.ndarray) -> np.ndarray:
        """Map an (N, 3) array of LPS points to continuous (i, j, k) indices."""
        points = np.atleast_2d(np.asarray(points, dtype=np.float64))
        inv = np.linalg.inv(self.direction @ np.diag(self.spacing))
        return (points - np.asarray(self.origin)) @ inv.T
