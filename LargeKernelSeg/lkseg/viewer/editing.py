"""The label-editing model behind the viewer's brush, eraser and fill tools (pure numpy).

A :class:`LabelEditor` owns a label array indexed ``[k, j, i]`` (like :class:`lkseg.io.image.Image`)
and changes it only through its tools. Every change is recorded as the flat indices of the
voxels it touched with their old and new values, so undo/redo costs memory proportional to the
edit, not to the volume. A brush stroke (press, drags, release) is one undo step.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

log = logging.getLogger(__name__)

#: slice axis of the array: 0 = axial (fixed k), 1 = coronal (fixed j), 2 = sagittal (fixed i)
AXES = (0, 1, 2)


@dataclass
class Edit:
    """One undoable step: flat voxel indices with their values before and after."""

    index: np.ndarray
    old: np.ndarray
    new: np.ndarray
    name: str = "edit"


def disk_offsets(radius: float, spacing_rc: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """Integer (row, col) offsets inside a disk of ``radius`` (in units of ``spacing_rc``; voxels by default)."""
    sr, sc = spacing_rc
    nr, nc = int(np.floor(radius / sr)), int(np.floor(radius / sc))
    rr, cc = np.mgrid[-nr:nr + 1, -nc:nc + 1]
    inside = (rr * sr) ** 2 + (cc * sc) ** 2 <= radius ** 2 + 1e-9
    return np.stack([rr[inside], cc[inside]], axis=1)


class LabelEditor:
    """Paint, erase and fill on a 3D label array with an undo/redo stack of ``max_steps`` steps."""

    def __init__(self, labels: np.ndarray, spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
                 max_steps: int = 50) -> None:
        """``labels`` is edited in place, indexed ``[k, j, i]``; ``spacing`` is (si, sj, sk) in mm."""
        if labels.ndim != 3:
            raise ValueError(f"the label array must be 3D, got shape {labels.shape}")
        self.labels = labels
        self.spacing_kji = (float(spacing[2]), float(spacing[1]), float(spacing[0]))
        self.max_steps = max(20, int(max_steps))
        self._undo: list[Edit] = []
        self._redo: list[Edit] = []
        self._stroke: dict[int, int] | None = None  # flat index -> value before the stroke
        self._stroke_name = "stroke"

    # ---------------------------------------------------------------- undo/redo
    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    @property
    def undo_depth(self) -> int:
        return len(self._undo)

    def _push(self, edit: Edit) -> None:
        if edit.index.size == 0:
            return
        self._undo.append(edit)
        self._redo.clear()
        if len(self._undo) > self.max_steps:
            self._undo.pop(0)

    def undo(self) -> bool:
        """Revert the last step; False when there is nothing to undo."""
        if self._stroke is not None:
            self.end_stroke()
        if not self._undo:
            return False
        edit = self._undo.pop()
        self.labels.reshape(-1)[edit.index] = edit.old
        self._redo.append(edit)
        return True

    def redo(self) -> bool:
        """Re-apply the last undone step; False when there is nothing to redo."""
        if not self._redo:
            return False
        edit = self._redo.pop()
        self.labels.reshape(-1)[edit.index] = edit.new
        self._undo.append(edit)
        return True

    # ---------------------------------------------------------------- low level
    def _apply(self, flat: np.ndarray, value: int, only: int | None = None) -> np.ndarray:
        """Set voxels ``flat`` to ``value`` (only those currently ``only`` if given); returns the changed ones."""
        view = self.labels.reshape(-1)
        flat = np.unique(flat)
        cur = view[flat]
        keep = cur != value
        if only is not None:
            keep &= cur == only
        flat = flat[keep]
        if flat.size == 0:
            return flat
        old = view[flat].copy()
        view[flat] = value
        if self._stroke is not None:
            for f, o in zip(flat.tolist(), old.tolist()):
                self._stroke.setdefault(f, o)
        else:
            self._push(Edit(flat, old, np.full(flat.shape, value, dtype=self.labels.dtype), "edit"))
        return flat

    def begin_stroke(self, name: str = "stroke") -> None:
        """Start collecting brush dabs into one undo step."""
        if self._stroke is not None:
            self.end_stroke()
        self._stroke, self._stroke_name = {}, name

    def end_stroke(self) -> int:
        """Close the current stroke as one undo step; returns how many voxels it changed."""
        stroke, self._stroke = self._stroke, None
        if not stroke:
            return 0
        index = np.fromiter(stroke.keys(), dtype=np.int64, count=len(stroke))
        old = np.fromiter(stroke.values(), dtype=self.labels.dtype, count=len(stroke))
        new = self.labels.reshape(-1)[index].copy()
        changed = old != new
        self._push(Edit(index[changed], old[changed], new[changed], self._stroke_name))
        return int(changed.sum())

    # ---------------------------------------------------------------- tools
    def brush_voxels(self, center_kji: tuple[int, int, int], radius: float, axis: int = 0,
                     sphere: bool = False) -> np.ndarray:
        """Flat indices under a brush of ``radius`` voxels at ``center_kji``.

        A disk in the slice plane normal to ``axis`` (in-plane voxel units), or with ``sphere`` a
        ball whose radius is ``radius`` in-plane voxels measured in mm (so it stays round on
        anisotropic volumes).
        """
        shape = np.array(self.labels.shape)
        c = np.array(center_kji, dtype=np.int64)
        if sphere:
            sp = np.array(self.spacing_kji)
            plane = [a for a in AXES if a != axis]
            r_mm = radius * min(sp[plane])
            n = np.floor(r_mm / sp).astype(int)
            grid = np.mgrid[-n[0]:n[0] + 1, -n[1]:n[1] + 1, -n[2]:n[2] + 1].reshape(3, -1).T
            inside = (((grid * sp) ** 2).sum(1)) <= r_mm ** 2 + 1e-9
            pts = c + grid[inside]
        else:
            off = disk_offsets(radius)
            plane = [a for a in AXES if a != axis]
            pts = np.repeat(c[None], len(off), axis=0)
            pts[:, plane[0]] += off[:, 0]
            pts[:, plane[1]] += off[:, 1]
        ok = np.all((pts >= 0) & (pts < shape), axis=1)
        pts = pts[ok]
        return np.ravel_multi_index(pts.T, self.labels.shape).astype(np.int64)

    def paint(self, center_kji: tuple[int, int, int], radius: float, value: int, axis: int = 0,
              sphere: bool = False) -> int:
        """Paint ``value`` under the brush; returns how many voxels changed."""
        return int(self._apply(self.brush_voxels(center_kji, radius, axis, sphere), int(value)).size)

    def erase(self, center_kji: tuple[int, int, int], radius: float, axis: int = 0, sphere: bool = False,
              only: int | None = None) -> int:
        """Set voxels under the brush to background (only label ``only`` if given)."""
        return int(self._apply(self.brush_voxels(center_kji, radius, axis, sphere), 0, only=only).size)

    def component(self, seed_kji: tuple[int, int, int]) -> np.ndarray:
        """Flat indices of the 3D (6-connected) component of equal label containing ``seed_kji``."""
        value = self.labels[tuple(seed_kji)]
        mask = self.labels == value
        lab, _ = ndimage.label(mask)
        return np.flatnonzero(lab.reshape(-1) == lab[tuple(seed_kji)])

    def fill_component(self, seed_kji: tuple[int, int, int], value: int) -> int:
        """Assign the connected component under ``seed_kji`` to label ``value`` (one undo step)."""
        self.end_stroke() if self._stroke is not None else None
        return int(self._apply(self.component(seed_kji), int(value)).size)

    def erase_component(self, seed_kji: tuple[int, int, int]) -> int:
        """Set the connected component under ``seed_kji`` to background (one undo step)."""
        if self.labels[tuple(seed_kji)] == 0:
            return 0
        return self.fill_component(seed_kji, 0)

    def assign_label(self, old: int, new: int) -> int:
        """Relabel every voxel of ``old`` as ``new`` (one undo step)."""
        return int(self._apply(np.flatnonzero(self.labels.reshape(-1) == old), int(new)).size)
