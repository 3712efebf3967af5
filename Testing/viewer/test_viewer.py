"""The desktop viewer driven through its real widgets (pytest-qt, under Xvfb): segment, overlay
pixels, brush strokes with undo/redo, export to a dataset, a real fine-tuning job, CLI and drops."""

from __future__ import annotations

import os

import numpy as np
import pytest

if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
        or os.environ.get("QT_QPA_PLATFORM") == "offscreen"):
    pytest.skip("no display: run the GUI tests under xvfb-run", allow_module_level=True)

from lkseg.io.image import Image
from lkseg.io.imageio import read_image, write_image
from PyQt5.QtCore import QMimeData, QPointF, Qt, QTimer, QUrl  # noqa: E402
from PyQt5.QtGui import QColor, QDropEvent  # noqa: E402

pytestmark = pytest.mark.gui
SHAPE = (6, 40, 48)  # k, j, i


def synthetic_image() -> Image:
    """organ1 (value 1.0) block at low i, organ2 (value 2.0) block at high i; LPS-identity direction."""
    a = np.zeros(SHAPE, np.float32)
    a[:, 8:20, 4:16] = 1.0
    a[:, 24:36, 30:44] = 2.0
    return Image(a, spacing=(1.0, 1.0, 2.0), origin=(0.0, 0.0, 0.0), direction=np.eye(3))


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("LKSEG_SETTINGS_DIR", str(tmp_path / "settings"))
    from lkseg.viewer.app import MainWindow

    win = MainWindow()
    qtbot.addWidget(win)
    win.resize(1300, 850)
    win.show()
    qtbot.waitExposed(win)
    return win


@pytest.fixture
def segmented(window, qtbot, tmp_path, threshold_checkpoint):
    path = write_image(synthetic_image(), tmp_path / "ct.nii.gz")
    assert window.open_image(path)
    window.segment_panel.set_checkpoint(threshold_checkpoint)
    assert window.segment_panel.start()
    qtbot.waitUntil(lambda: window.segment_panel.last_result is not None and not window.segment_panel.busy,
                    timeout=60000)
    return window


def pixel(view, kji) -> QColor:
    """Colour of voxel ``kji``'s centre in a grab of the axial view (LPS identity: col = i, row = j)."""
    img = view.grab().toImage()
    rect = view.image_rect()
    k, j, i = kji
    x = rect.x() + (i + 0.5) * rect.width() / SHAPE[2]
    y = rect.y() + (j + 0.5) * rect.height() / SHAPE[1]
    return QColor(img.pixel(int(x), int(y)))


def test_segment_shows_organ_colours_at_the_organs(segmented, qtbot):
    win = segmented
    lab = win.state.labels
    ref = np.zeros(SHAPE, np.uint8)
    ref[:, 8:20, 4:16], ref[:, 24:36, 30:44] = 1, 2
    np.testing.assert_array_equal(lab, ref)
    table = win.state.table
    assert [win.segment_list.item(r, 0).text() for r in range(2)] == ["organ1", "organ2"]
    assert float(win.segment_list.item(0, 1).text()) == pytest.approx(12 * 12 * 6 * 2.0 / 1000, abs=0.05)
    win.opacity.setValue(100)  # opaque overlay: the pixel is exactly the card's colour
    view = win.views[0]
    for kji, value in (((3, 14, 10), 1), ((3, 30, 37), 2)):
        c = pixel(view, kji)
        assert (c.red(), c.green(), c.blue()) == tuple(table.by_value(value).color), kji
    c = pixel(view, (3, 2, 30))  # background (value 0 -> grey under the abdomen window)
    assert c.red() == c.green() == c.blue()
    # hiding organ1 in the segment list removes its colour
    win.segment_list.item(0, 0).setCheckState(Qt.Unchecked)
    c = pixel(view, (3, 14, 10))
    assert c.red() == c.green() == c.blue()
    # the 3D view (VTK through Mesa's GLX under Xvfb) builds one surface per visible organ
    if os.environ.get("LKSEG_VIEWER_NO_3D"):
        assert not win.volume_view.available and win.volume_view.update_surfaces() == 0
    else:
        assert win.volume_view.available, win.volume_view.text()
        assert win.volume_view.update_surfaces() == 1  # organ2 only: organ1 is hidden


def test_brush_stroke_changes_exactly_the_brush_and_undo_redo(segmented, qtbot):
    win = segmented
    view = win.views[0]
    win.state.set_cursor((2, 20, 20))
    win.set_tool("paint")
    win.radius.setValue(2.5)
    win.segment_list.selectRow(1)
    assert win.state.active_label == 2
    before = win.state.labels.copy()
    j0, i0, i1 = 5, 20, 27
    a, b = view.widget_pos_of((2, j0, i0)).toPoint(), view.widget_pos_of((2, j0, i1)).toPoint()
    qtbot.mousePress(view, Qt.LeftButton, pos=a)
    for t in np.linspace(0, 1, 6)[1:]:
        qtbot.mouseMove(view, a + (b - a) * float(t))
    qtbot.mouseRelease(view, Qt.LeftButton, pos=b)
    after = win.state.labels.copy()
    kk, jj, ii = np.indices(SHAPE)
    di = ii - np.clip(ii, i0, i1)  # distance to the stroke's segment of voxel centres
    brush = (kk == 2) & ((jj - j0) ** 2 + di ** 2 <= 2.5 ** 2)
    np.testing.assert_array_equal(after != before, brush & (before != 2))
    assert (after[brush] == 2).all()
    assert win.state.editor.undo_depth == 1  # the whole stroke is one step
    assert win.undo() and np.array_equal(win.state.labels, before)
    assert win.redo() and np.array_equal(win.state.labels, after)
    # erase-region on organ1 from the coronal view removes the whole connected organ
    win.set_tool("erase_component")
    cor = win.views[1]
    win.state.set_cursor((3, 14, 10))
    qtbot.mouseClick(cor, Qt.LeftButton, pos=cor.widget_pos_of((3, 14, 10)).toPoint())
    assert not (win.state.labels == 1).any() and (win.state.labels == 2).sum() == (after == 2).sum()
    win.undo()
    np.testing.assert_array_equal(win.state.labels, after)


def test_navigation_scroll_zoom_presets(segmented, qtbot):
    win = segmented
    view = win.views[0]
    qtbot.mouseClick(view, Qt.LeftButton, pos=view.widget_pos_of((3, 30, 37)).toPoint())
    assert win.state.cursor == [3, 30, 37]  # linked crosshair: coronal/sagittal follow the cursor
    assert win.views[1].slice_index() == 30 and win.views[2].slice_index() == 37
    qtbot.keyClick(view, Qt.Key_Up)
    assert win.state.cursor[0] == 4
    win.preset.setCurrentText("lung")
    assert (win.state.window, win.state.level) == (1500.0, -600.0)
    w0 = view.image_rect().width()
    view.zoom = 2.0
    assert view.image_rect().width() == pytest.approx(2 * w0)


def test_export_to_dataset_and_files(segmented, tmp_path):
    from lkseg.dataset.local import LocalDataset

    win = segmented
    win.state.editor.paint((1, 2, 2), 1, 2)
    case = win.export_panel.export_to_dataset(tmp_path / "ds")
    ds = LocalDataset(tmp_path / "ds")
    assert ds.cases() == [case]
    img, lab = ds.read_case(case)
    np.testing.assert_array_equal(lab.array, win.state.labels)
    np.testing.assert_allclose(img.array, synthetic_image().array)
    for name in ("labels.nii.gz", "labels.seg.nrrd"):
        out = win.export_panel.save_labels(tmp_path / name)
        np.testing.assert_array_equal(read_image(out).array, win.state.labels)


def test_finetune_job_from_the_panel_reports_progress_and_loads(segmented, qtbot, tmp_path):
    win = segmented
    win.export_panel.dataset_edit.setText(str(tmp_path / "ds"))
    win.export_panel.export_to_dataset()
    win.export_panel.export_to_dataset()  # two cases: one can be held out for validation
    fp = win.finetune_panel
    fp.steps.setValue(3)
    fp.val_every.setValue(3)
    fp.device.setCurrentText("cpu")
    qtbot.mouseClick(fp.start_button, Qt.LeftButton)
    assert fp.state == "running", fp.status.text()
    qtbot.waitUntil(lambda: fp.state != "running", timeout=55000)
    assert fp.state == "done", fp.status.text()
    steps = [r["step"] for r in fp.records if "event" not in r]
    assert steps == [1, 2, 3] and fp.progress.value() == 3
    assert len(fp.plot.loss) == 3 and fp.plot.dice
    qtbot.mouseClick(fp.load_button, Qt.LeftButton)
    assert win.segment_panel.checkpoint() == fp.best.resolve()


def test_drop_and_command_line(qtbot, tmp_path, monkeypatch, threshold_checkpoint):
    monkeypatch.setenv("LKSEG_SETTINGS_DIR", str(tmp_path / "settings"))
    from lkseg.viewer.app import MainWindow, build_parser, open_from_args

    img = write_image(synthetic_image(), tmp_path / "ct.nrrd")
    win = MainWindow()
    qtbot.addWidget(win)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(img)), QUrl.fromLocalFile(str(threshold_checkpoint))])
    win.dropEvent(QDropEvent(QPointF(10, 10), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier))
    assert win.state.image is not None and win.state.image.array.shape == SHAPE
    assert win.segment_panel.checkpoint() == threshold_checkpoint.resolve()

    labels = np.zeros(SHAPE, np.uint8)
    labels[0, 0, 0] = 1
    lab_path = write_image(synthetic_image().with_array(labels), tmp_path / "lab.nii.gz")
    args = build_parser().parse_args([str(img), "-m", str(threshold_checkpoint), "--labels", str(lab_path)])
    w = open_from_args(args)
    qtbot.addWidget(w)
    assert w.state.image.array.shape == SHAPE and int(w.state.labels.sum()) == 1
    assert w.segment_panel.checkpoint() == threshold_checkpoint.resolve()
    assert list(w.state.table.names) == ["organ1", "organ2"]


def test_cancel_keeps_the_window_responsive(window, qtbot):
    """The bundled model on the bundled CT: the event loop keeps ticking while it runs; Cancel stops it."""
    from lkseg.app.resources import default_model, sample_ct

    assert default_model() is not None and sample_ct() is not None, "the bundled sample CT and model are missing"
    win = window
    assert win.open_image(sample_ct())
    win.segment_panel.set_checkpoint(default_model())
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(20)
    import time

    t0 = time.perf_counter()
    assert win.segment_panel.start()
    qtbot.wait(60)
    qtbot.mouseClick(win.segment_panel.cancel_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: not win.segment_panel.busy, timeout=20000)
    # the thread's finished signal reaches the panel (which re-enables Segment) through the event loop
    qtbot.waitUntil(win.segment_panel.run_button.isEnabled, timeout=5000)
    busy_s = time.perf_counter() - t0
    timer.stop()
    # the GUI thread kept running its 20 ms timer while the worker was busy (>= 1 tick per 100 ms)
    assert len(ticks) >= busy_s * 10 - 1, (len(ticks), busy_s)
    assert "Cancelled" in win.segment_panel.status.text(), win.segment_panel.status.text()
    assert win.segment_panel.last_result is None and not win.state.labels.any()
    assert win.segment_panel.run_button.isEnabled()


def test_checkpoint_list_names_the_bundled_models_by_modality(window):
    from lkseg.app.resources import bundled_models

    combo = window.segment_panel.combo
    texts = [combo.itemText(i) for i in range(combo.count())]
    paths = [combo.itemData(i) for i in range(combo.count())]
    assert texts[:2] == ["Bundled: Abdominal CT demo, 5 organs (CT)",
                         "Bundled: Abdominal T2 MR, 4 organs (MR T2-weighted (T2-SPIR))"]
    assert paths[:2] == [str(p.resolve()) for _, p in bundled_models()]
    window.segment_panel.set_checkpoint(bundled_models()[1][1])  # chosen again: still named, not a file name
    assert window.segment_panel.combo.currentText().startswith("Bundled: Abdominal T2 MR")
