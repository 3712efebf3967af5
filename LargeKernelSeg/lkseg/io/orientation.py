"""Anatomical orientation codes (``"RAS"``, ``"LPS"``, ...) and which voxel axis of an image points
closest to each letter."""

from __future__ import annotations

import itertools
import logging

import numpy as np

from lkseg.errors import LkSegError

log = logging.getLogger(__name__)


#: LPS unit vector of each anatomical direction letter
_AXIS_LETTERS = {
    "R": (-1.0, 0.0, 0.0), "L": (1.0, 0.0, 0.0),
    "A": (0.0, -1.0, 0.0), "P": (0.0, 1.0, 0.0),
    "S": (0.0, 0.0, 1.0), "I": (0.0, 0.0, -1.0),
}


def orientation_axes(direction: np.ndarray, code: str = "RAS") -> tuple[tuple[int, ...], tuple[int, ...]]:
    """For each new axis, which input axis it is and its sign (+1 or -1).

    ``code`` is a three-letter orientation such as ``"RAS"`` or ``"LPS"``. The permutation
    maximising the summed |cosine| between the input axes and the wanted axes is chosen, so
    oblique images get the closest axis-aligned orientation.
    """
    code = code.upper()
    if len(code) != 3 or any(c not in _AXIS_LETTERS for c in code) or len({_pair(c) for c in code}) != 3:
        raise LkSegError(f"orientation {code!r} is not a valid three-letter code such as 'RAS' or 'LPS'")
    targets = np.array([_AXIS_LETTERS[c] for c in code])  # (3 new axes, 3 LPS)
    cos = targets @ np.asarray(direction, dtype=np.float64)  # [new axis, input axis]
    best = max(itertools.permutations(range(3)), key=lambda p: sum(abs(cos[a, p[a]]) for a in range(3)))
    signs = tuple(1 if cos[a, best[a]] >= 0 else -1 for a in range(3))
    return tuple(best), signs


def _pair(letter: str) -> int:
    return {"R": 0, "L": 0, "A": 1, "P": 1, "S": 2, "I": 2}[letter]
