"""Volume geometries shared by the Slicer-module tests."""

import numpy as np


def oblique_flipped_ijk_to_ras() -> np.ndarray:
    """IJKToRAS with a 30 degree rotation about S, a flipped k axis and anisotropic spacing."""
    a = np.deg2rad(30)
    rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, -1.0]])
    m = np.eye(4)
    m[:3, :3] = rot @ np.diag([0.7, 0.9, 2.5])
    m[:3, 3] = [-12.5, 30.0, 101.0]
    return m
