"""The viewer's label-editing model (pure numpy, no display needed): brush, fill, undo/redo."""

from __future__ import annotations

import numpy as np
import pytest
from lkseg.viewer.editing import LabelEditor


def disk_mask(shape, k, j, i, r):
    """Independent reference: voxels of slice k within r voxels of (j, i)."""
    kk, jj, ii = np.indices(shape)
    return (kk == k) & ((jj - j) ** 2 + (ii - i) ** 2 <= r * r)


def test_paint_disk_changes_exactly_the_disk_and_undo_redo_restore():
    lab = np.zeros((5, 30, 40), np.uint8)
    lab[2, :3, :3] = 4
    ed = LabelEditor(lab, spacing=(1.0, 1.0, 3.0))
    before = lab.copy()
    assert ed.paint((2, 10, 12), 3.5, value=2, axis=0) == int(disk_mask(lab.shape, 2, 10, 12, 3.5).sum())
    np.testing.assert_array_equal(lab != before, disk_mask(lab.shape, 2, 10, 12, 3.5))
    assert (lab[disk_mask(lab.shape, 2, 10, 12, 3.5)] == 2).all()
    after = lab.copy()
    assert ed.undo() and np.array_equal(lab, before)
    assert ed.redo() and np.array_equal(lab, after)
    assert not ed.redo()


def test_brush_clipped_at_the_border_and_on_other_axes():
    lab = np.zeros((6, 8, 9), np.int16)
    ed = LabelEditor(lab)
    ed.paint((0, 0, 0), 2, value=1, axis=0)
    np.testing.assert_array_equal(lab == 1, disk_mask(lab.shape, 0, 0, 0, 2))
    lab[:] = 0
    ed.paint((3, 4, 5), 1, value=3, axis=2)  # sagittal: plane (k, j) at i=5
    kk, jj, ii = np.indices(lab.shape)
    np.testing.assert_array_equal(lab == 3, (ii == 5) & ((kk - 3) ** 2 + (jj - 4) ** 2 <= 1))


def test_sphere_is_round_in_millimetres_on_anisotropic_voxels():
    lab = np.zeros((11, 21, 21), np.uint8)
    ed = LabelEditor(lab, spacing=(1.0, 1.0, 2.0))  # sk = 2 mm
    ed.paint((5, 10, 10), 4, value=1, axis=0, sphere=True)
    kk, jj, ii = np.indices(lab.shape)
    ref = ((kk - 5) * 2.0) ** 2 + (jj - 10) ** 2 + (ii - 10) ** 2 <= 16
    np.testing.assert_array_equal(lab == 1, ref)


def test_stroke_is_one_undo_step_and_erase_only_touches_the_given_label():
    lab = np.zeros((3, 20, 20), np.uint8)
    lab[1, 5:15, 5:15] = 1
    lab[1, 5:15, 10:15] = 2
    ed = LabelEditor(lab)
    before = lab.copy()
    ed.begin_stroke("erase")
    for i in range(4, 16):
        ed.erase((1, 10, i), 2, axis=0, only=2)
    n = ed.end_stroke()
    assert ed.undo_depth == 1 and n == int(((before == 2) & (lab == 0)).sum()) > 0
    assert (lab[before == 1] == 1).all()  # label 1 untouched by an erase restricted to label 2
    ed.undo()
    np.testing.assert_array_equal(lab, before)


def test_fill_and_erase_connected_component():
    lab = np.zeros((4, 10, 10), np.uint8)
    lab[1, 1:4, 1:4] = 1
    lab[2, 6:9, 6:9] = 1  # a second, separate component of label 1
    ed = LabelEditor(lab)
    assert ed.fill_component((1, 2, 2), 3) == 9
    assert (lab[1, 1:4, 1:4] == 3).all() and (lab[2, 6:9, 6:9] == 1).all()
    assert ed.erase_component((2, 7, 7)) == 9 and lab.max() == 3
    ed.undo()
    ed.undo()
    assert (lab[1, 1:4, 1:4] == 1).all() and (lab[2, 6:9, 6:9] == 1).all()


def test_history_keeps_at_least_20_steps_and_stores_only_changed_voxels():
    lab = np.zeros((1, 64, 64), np.uint8)
    ed = LabelEditor(lab, max_steps=5)  # raised to the minimum of 20
    states = [lab.copy()]
    for s in range(25):
        ed.paint((0, 2 + 2 * s, 32), 1, value=1 + s % 3, axis=0)
        states.append(lab.copy())
    assert ed.undo_depth == 20
    assert all(e.index.size == 5 for e in ed._undo)  # a radius-1 disk: 5 voxels, not the volume
    for s in range(20):
        assert ed.undo()
        np.testing.assert_array_equal(lab, states[24 - s])
    assert not ed.undo()
    for s in range(20):
        assert ed.redo()
    np.testing.assert_array_equal(lab, states[-1])


def test_new_edit_clears_redo_and_bad_arrays_are_refused():
    lab = np.zeros((2, 5, 5), np.uint8)
    ed = LabelEditor(lab)
    ed.paint((0, 2, 2), 1, 1)
    ed.undo()
    ed.paint((1, 2, 2), 0.5, 2)
    assert not ed.can_redo
    with pytest.raises(ValueError, match="3D"):
        LabelEditor(np.zeros((4, 4), np.uint8))
