"""The desktop viewer with DICOM (pytest-qt under Xvfb): segment a DICOM series, correct one organ with
the brush, save a DICOM SEG (corrected organ MANUAL, the other AUTOMATIC), open it back, refuse a SEG
for a volume that did not come from DICOM."""

from __future__ import annotations

import os
from pathlib import Path

import highdicom as hd
import numpy as np
import pytest

if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
        or os.environ.get("QT_QPA_PLATFORM") == "offscreen"):
    pytest.skip("no display: run the GUI tests under xvfb-run", allow_module_level=True)

from lkseg.checkpoint.native import read_card
from lkseg.dicom import load_source_series, read_dicom_seg
from lkseg.io.imageio import read_image, write_image

pytestmark = pytest.mark.gui


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("LKSEG_SETTINGS_DIR", str(tmp_path / "settings"))
    from lkseg.viewer.app import MainWindow

    win = MainWindow()
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    return win


def segment(win, qtbot, image: Path, checkpoint: Path) -> None:
    assert win.open_image(image)
    win.segment_panel.set_checkpoint(checkpoint)
    assert win.segment_panel.start()
    qtbot.waitUntil(lambda: win.segment_panel.last_result is not None and not win.segment_panel.busy, timeout=120000)


def test_corrected_dicom_seg_from_the_viewer(window, qtbot, tmp_path: Path, series_dirs: dict[str, Path],
                                             ct_threshold_checkpoint: Path) -> None:
    series = series_dirs["oblique"]
    segment(window, qtbot, series, ct_threshold_checkpoint)
    model = window.state.labels.copy()
    assert np.count_nonzero(model == 1) > 1000 and np.count_nonzero(model == 2) > 100
    assert not model[10, :16, :16].any()  # air in the corner
    window.state.editor.paint((10, 8, 8), 5.0, 2)  # a correction that adds organ2 there, touching no organ1
    assert (window.state.labels != model).any()
    out = window.export_panel.save_labels(tmp_path / "corrected.dcm")
    assert "corrected by hand: organ2" in window.export_panel.status.text()
    table = read_card(ct_threshold_checkpoint).labels
    back, _ = read_dicom_seg(out, load_source_series(series), read_image(series), table)
    np.testing.assert_array_equal(back.array, window.state.labels)
    seg = hd.seg.segread(out)
    kinds = {item.SegmentLabel: item.SegmentAlgorithmType for item in seg.SegmentSequence}
    assert kinds == {"organ1": "AUTOMATIC", "organ2": "MANUAL"}

    corrected = window.state.labels.copy()
    window.state.set_labels(np.zeros_like(corrected), window.state.table)
    window.open_path(out)  # as a drop does
    np.testing.assert_array_equal(window.state.labels, corrected)


def test_dicom_seg_needs_a_dicom_source(window, qtbot, tmp_path: Path, series_dirs: dict[str, Path],
                                        ct_threshold_checkpoint: Path) -> None:
    nifti = write_image(read_image(series_dirs["axial"]), tmp_path / "ct.nii.gz")
    segment(window, qtbot, nifti, ct_threshold_checkpoint)
    panel = window.export_panel
    assert panel._guard(panel.save_labels, tmp_path / "x.dcm") is None
    assert "DICOM SEG needs a DICOM source" in panel.status.text()
    assert not (tmp_path / "x.dcm").exists()
