"""``lkseg-viewer``: the desktop viewer's main window and command line.

``lkseg-viewer [IMAGE] [-m CKPT] [--labels LABELS]`` opens a volume (file or DICOM folder), a
checkpoint (default: the bundled one) and optionally an existing label map. Segmentation,
export and fine-tuning all call the core :mod:`lkseg` functions; this module only wires widgets.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

from PyQt5.QtCore import Qt
from PyQt5.QtGui import QKeySequence
from PyQt5.QtWidgets import (QAction, QApplication, QButtonGroup, QCheckBox, QComboBox, QDoubleSpinBox, QFileDialog,
                             QGridLayout, QHBoxLayout, QLabel, QMainWindow, QPushButton, QSlider, QSplitter,
                             QTabWidget, QToolBar, QVBoxLayout, QWidget)

# DICOM support is loaded before any window exists: importing pydicom/highdicom (their native plugins,
# pyjpegls and Pillow's lcms) while the VTK view was already up crashed Qt's next repaint (seen under
# pytest-qt with pydicom 3.0, pyjpegls 1.5, PyQt5 5.15, vtk 9.6)
import lkseg.dicom  # noqa: F401, E402
from lkseg.viewer.export_panel import ExportPanel
from lkseg.viewer.finetune_panel import FinetunePanel
from lkseg.viewer.segment_list import SegmentList
from lkseg.viewer.segment_panel import SegmentPanel
from lkseg.viewer.slice_view import SliceView
from lkseg.viewer.state import PRESETS, ViewerState
from lkseg.viewer.volume_view import make_volume_view

log = logging.getLogger(__name__)
TOOLS = [("navigate", "Navigate"), ("paint", "Paint"), ("erase", "Erase"), ("fill", "Fill region"),
         ("erase_component", "Erase region")]


class MainWindow(QMainWindow):
    """Three slice views + 3D view, with Segment / Segments / Edit / Export / Fine-tune panels."""

    def __init__(self) -> None:
        super().__init__()
        self.setWindowTitle("LargeKernelSeg Viewer")
        self.setAcceptDrops(True)
        self.state = ViewerState()
        st = self.state
        self.views = {a: SliceView(st, a) for a in (0, 1, 2)}
        self.volume_view = make_volume_view(st)
        grid = QWidget()
        g = QGridLayout(grid)
        g.setContentsMargins(4, 4, 4, 4)
        g.setSpacing(4)
        g.addWidget(self.views[0], 0, 0)
        g.addWidget(self.volume_view, 0, 1)
        g.addWidget(self.views[1], 1, 0)
        g.addWidget(self.views[2], 1, 1)
        for n in (0, 1):
            g.setColumnStretch(n, 1)
            g.setRowStretch(n, 1)

        self.segment_panel = SegmentPanel(st)
        self.segment_list = SegmentList(st)
        self.export_panel = ExportPanel(st)
        self.finetune_panel = FinetunePanel(lambda: self.export_panel.dataset_edit.text(),
                                            self.segment_panel.checkpoint)
        self.tabs = QTabWidget()
        seg_tab = QWidget()
        sl = QVBoxLayout(seg_tab)
        sl.addWidget(self.segment_list, 1)
        sl.addWidget(self._edit_box())
        self.tabs.addTab(seg_tab, "Segments")
        exp_tab = QWidget()
        el = QVBoxLayout(exp_tab)
        el.addWidget(self.export_panel)
        el.addStretch(1)
        self.tabs.addTab(exp_tab, "Export")
        self.tabs.addTab(self.finetune_panel, "Fine-tune")
        side = QWidget()
        side.setMinimumWidth(360)
        side.setMaximumWidth(460)
        sv = QVBoxLayout(side)
        sv.setContentsMargins(6, 6, 6, 6)
        title = QLabel("LargeKernelSeg")
        title.setObjectName("title")
        sv.addWidget(title)
        sv.addWidget(self.segment_panel)
        sv.addWidget(self.tabs, 1)
        split = QSplitter()
        split.addWidget(grid)
        split.addWidget(side)
        split.setStretchFactor(0, 1)
        self.setCentralWidget(split)
        self._toolbar()
        self.segment_list.refresh()  # the default checkpoint's organs, before any image is open
        self.segment_panel.segmented.connect(lambda _: self.update_3d())
        self.finetune_panel.checkpointReady.connect(self._load_finetuned)
        st.cursorChanged.connect(self._show_cursor)
        self.resize(1500, 920)

    # ---------------------------------------------------------------- layout helpers
    def _toolbar(self) -> None:
        tb = QToolBar("Main")
        tb.setMovable(False)
        self.addToolBar(tb)
        open_act = QAction("Open volume…", self)
        open_act.setShortcut(QKeySequence.Open)
        open_act.triggered.connect(self._open_dialog)
        tb.addAction(open_act)
        dicom_act = QAction("Open DICOM folder…", self)
        dicom_act.triggered.connect(self._open_dicom_dialog)
        tb.addAction(dicom_act)
        seg_act = QAction("Open labels…", self)
        seg_act.setToolTip("A label map on this volume's grid, or a DICOM SEG over the open DICOM series")
        seg_act.triggered.connect(self._open_labels_dialog)
        tb.addAction(seg_act)
        sample = QAction("Open sample CT", self)
        sample.triggered.connect(self.open_sample)
        tb.addAction(sample)
        tb.addSeparator()
        tb.addWidget(QLabel(" Window "))
        self.preset = QComboBox()
        self.preset.addItems(list(PRESETS))
        self.preset.currentTextChanged.connect(self.state.set_preset)
        tb.addWidget(self.preset)
        tb.addWidget(QLabel("  Overlay "))
        self.opacity = QSlider(Qt.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(int(self.state.opacity * 100))
        self.opacity.setFixedWidth(140)
        self.opacity.valueChanged.connect(lambda v: self.state.set_opacity(v / 100))
        tb.addWidget(self.opacity)
        tb.addSeparator()
        self.undo_act = QAction("Undo", self)
        self.undo_act.setShortcut(QKeySequence.Undo)
        self.undo_act.triggered.connect(self.undo)
        self.redo_act = QAction("Redo", self)
        self.redo_act.setShortcut(QKeySequence.Redo)
        self.redo_act.triggered.connect(self.redo)
        tb.addAction(self.undo_act)
        tb.addAction(self.redo_act)
        tb.addSeparator()
        refresh3d = QAction("Update 3D", self)
        refresh3d.triggered.connect(self.update_3d)
        tb.addAction(refresh3d)

    def _edit_box(self) -> QWidget:
        box = QWidget()
        lay = QVBoxLayout(box)
        lay.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        self.tool_group = QButtonGroup(self)
        self.tool_buttons: dict[str, QPushButton] = {}
        for name, text in TOOLS:
            b = QPushButton(text)
            b.setCheckable(True)
            b.setChecked(name == self.state.tool)
            b.clicked.connect(lambda _=False, n=name: self.set_tool(n))
            self.tool_group.addButton(b)
            self.tool_buttons[name] = b
            row.addWidget(b)
        lay.addLayout(row)
        row2 = QHBoxLayout()
        row2.addWidget(QLabel("Brush radius (voxels)"))
        self.radius = QDoubleSpinBox()
        self.radius.setRange(0.0, 50.0)
        self.radius.setSingleStep(0.5)
        self.radius.setValue(self.state.brush_radius)
        self.radius.valueChanged.connect(lambda v: setattr(self.state, "brush_radius", float(v)))
        row2.addWidget(self.radius)
        self.sphere = QCheckBox("3D sphere")
        self.sphere.toggled.connect(lambda on: setattr(self.state, "sphere", bool(on)))
        row2.addWidget(self.sphere)
        row2.addStretch(1)
        lay.addLayout(row2)
        hint = QLabel("Pick a segment above, then paint on any slice. Wheel: slice · Ctrl+wheel: zoom · "
                      "right drag: pan · Ctrl+Z / Ctrl+Shift+Z: undo / redo")
        hint.setObjectName("hint")
        hint.setWordWrap(True)
        lay.addWidget(hint)
        return box

    # ---------------------------------------------------------------- actions
    def set_tool(self, name: str) -> None:
        self.state.tool = name
        self.tool_buttons[name].setChecked(True)
        for view in self.views.values():
            view.update()  # drop a brush outline left from the previous tool

    def undo(self) -> bool:
        ok = self.state.editor is not None and self.state.editor.undo()
        if ok:
            self.state.labelsChanged.emit()
        return ok

    def redo(self) -> bool:
        ok = self.state.editor is not None and self.state.editor.redo()
        if ok:
            self.state.labelsChanged.emit()
        return ok

    def open_image(self, path: str | Path) -> bool:
        from lkseg.io.imageio import read_image

        try:
            image = read_image(path)
        except Exception as exc:
            self.statusBar().showMessage(f"Cannot open {path}: {exc}")
            return False
        self.state.set_image(image, str(path))
        self.segment_panel._checkpoint_changed()
        self.setWindowTitle(f"LargeKernelSeg Viewer — {Path(path).name}")
        self.statusBar().showMessage(f"{Path(path).name}: {image.array.shape[::-1]} voxels, "
                                     f"spacing {tuple(round(s, 2) for s in image.spacing)} mm")
        self.update_3d()
        return True

    def open_labels(self, path: str | Path) -> bool:
        """A label map on the image's grid, or a DICOM SEG over the DICOM series that is open."""
        from lkseg.dicom import is_dicom_seg
        from lkseg.io.imageio import read_image

        try:
            lab = self._read_seg(path) if is_dicom_seg(path) else read_image(path)
            arr = lab.array
            self.state.set_labels(arr.astype("uint8" if arr.min() >= 0 and arr.max() < 256 else "int16"),
                                  self.state.table)
        except Exception as exc:
            self.statusBar().showMessage(f"Cannot open labels {path}: {exc}")
            return False
        self.update_3d()
        return True

    def _read_seg(self, path: str | Path):
        from lkseg.dicom.seg_read import labels_from_seg

        st = self.state
        if st.image is None or not st.image_path:
            raise ValueError("a DICOM SEG is read over its DICOM series: open the series folder first")
        if st.table is None:
            raise ValueError("pick a checkpoint first: its label table names the organs the SEG's segments map to")
        labels, mapping = labels_from_seg(path, st.image_path, st.image, st.table, skip_unmapped=True)
        if mapping.unmapped:
            log.warning("%s: left out %s", path, "; ".join(mapping.unmapped))
            self.statusBar().showMessage(f"Left out {len(mapping.unmapped)} segment(s) the label table does not "
                                         f"name: {'; '.join(mapping.unmapped)}")
        return labels

    def open_sample(self) -> None:
        from lkseg.app.resources import sample_ct

        path = sample_ct()
        if path is None:
            self.statusBar().showMessage("No bundled sample CT in this installation.")
        else:
            self.open_image(path)

    def _open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open volume", "",
                                              "Volumes (*.nii *.nii.gz *.nrrd *.mha *.mhd);;All files (*)")
        if path:
            self.open_image(path)

    def _open_dicom_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open DICOM series folder", "")
        if path:
            self.open_image(path)

    def _open_labels_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open labels", "", "Label maps and DICOM SEG (*.nii *.nii.gz "
                                              "*.nrrd *.mha *.dcm);;All files (*)")
        if path:
            self.open_labels(path)

    def update_3d(self) -> None:
        try:
            self.volume_view.update_surfaces()
        except Exception as exc:  # a 3D failure never takes the viewer down
            log.warning("3D update failed: %s", exc)

    def _load_finetuned(self, path: str) -> None:
        self.segment_panel.set_checkpoint(path)
        self.statusBar().showMessage(f"Loaded fine-tuned checkpoint {path}; press Segment to use it.")

    def _show_cursor(self) -> None:
        st = self.state
        if st.image is None:
            return
        k, j, i = st.cursor
        value = st.image.array[k, j, i]
        lab = int(st.labels[k, j, i]) if st.labels is not None else 0
        name = st.table.by_value(lab).name if lab and st.table is not None and lab in st.table.values else "-"
        self.statusBar().showMessage(f"voxel (i={i}, j={j}, k={k})  value {value}  label {name}")

    # ---------------------------------------------------------------- drag and drop
    def dragEnterEvent(self, event) -> None:  # noqa: N802
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802
        for url in event.mimeData().urls():
            self.open_path(url.toLocalFile())

    def open_path(self, path: str | Path) -> None:
        """A dropped/opened path: checkpoints go to the Segment panel, a DICOM SEG over the open series is
        read as its labels, anything else is read as a volume."""
        from lkseg.dicom import is_dicom_seg

        if str(path).endswith((".safetensors", ".pth", ".pt")):
            self.segment_panel.set_checkpoint(path)
        elif is_dicom_seg(path):
            self.open_labels(path)
        else:
            self.open_image(path)

    def closeEvent(self, event) -> None:  # noqa: N802
        self.segment_panel.shutdown()
        self.finetune_panel.shutdown()
        super().closeEvent(event)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lkseg-viewer", description="LargeKernelSeg desktop viewer")
    p.add_argument("image", nargs="?", help="volume to open (NIfTI, NRRD, MHA or a DICOM folder)")
    p.add_argument("-m", "--model", help="checkpoint (.safetensors); default: the bundled model")
    p.add_argument("--labels", help="label map to load over the image")
    return p


def open_from_args(args: argparse.Namespace) -> MainWindow:
    """A shown main window with the command line's image, checkpoint and label map loaded."""
    win = MainWindow()
    if args.model:
        win.segment_panel.set_checkpoint(args.model)
    if args.image:
        win.open_image(args.image)
    if args.labels:
        win.open_labels(args.labels)
    win.show()
    return win


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from lkseg.viewer.theme import apply_dark_theme

    app = QApplication.instance() or QApplication(sys.argv[:1])
    apply_dark_theme(app)
    win = open_from_args(args)
    code = app.exec_()
    del win  # kept alive while the event loop ran
    return code

if __name__ == "__main__":
    sys.exit(main())
