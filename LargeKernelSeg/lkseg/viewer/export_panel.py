"""Export panel: add the corrected case to the local dataset, or save the labels as NIfTI / .seg.nrrd / DICOM SEG."""

from __future__ import annotations

import logging
from pathlib import Path

from PyQt5.QtCore import pyqtSignal
from PyQt5.QtWidgets import (QFileDialog, QGroupBox, QHBoxLayout, QLabel, QLineEdit, QPushButton, QVBoxLayout,
                             QWidget)

from lkseg.viewer.state import ViewerState

log = logging.getLogger(__name__)


class ExportPanel(QGroupBox):
    """Dataset folder + "Add case"; "Save labels…" by file suffix through :mod:`lkseg.io.export`."""

    exported = pyqtSignal(str)

    def __init__(self, state: ViewerState, parent: QWidget | None = None) -> None:
        super().__init__("Export", parent)
        self.state = state
        self.dataset_edit = QLineEdit(str(Path.home() / "lkseg-dataset"))
        self.dataset_edit.setToolTip("Local dataset folder (imagesTr/, labelsTr/, dataset.json)")
        pick = QPushButton("…")
        pick.setFixedWidth(30)
        pick.clicked.connect(self._pick_dataset)
        self.add_button = QPushButton("Add case to dataset")
        self.save_button = QPushButton("Save labels…")
        self.status = QLabel("")
        self.status.setObjectName("hint")
        self.status.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(self.dataset_edit, 1)
        row.addWidget(pick)
        buttons = QHBoxLayout()
        buttons.addWidget(self.add_button)
        buttons.addWidget(self.save_button)
        lay = QVBoxLayout(self)
        lay.addWidget(QLabel("Dataset folder"))
        lay.addLayout(row)
        lay.addLayout(buttons)
        lay.addWidget(self.status)
        self.add_button.clicked.connect(lambda: self._guard(self.export_to_dataset))
        self.save_button.clicked.connect(self._save_dialog)

    def _pick_dataset(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Dataset folder", self.dataset_edit.text())
        if path:
            self.dataset_edit.setText(path)

    def _guard(self, fn, *args):
        try:
            return fn(*args)
        except Exception as exc:  # user-facing: show, keep the window up
            self.status.setText(f"Export failed: {exc}")
            log.warning("export failed: %s", exc)
            return None

    def _check(self) -> None:
        if self.state.image is None or self.state.labels is None or self.state.table is None:
            raise ValueError("nothing to export: open a volume and segment or paint it first")

    def export_to_dataset(self, root: str | Path | None = None) -> str:
        """Add image + current labels as a case of the dataset at ``root`` (created if needed); returns the case id."""
        from lkseg.dataset.local import LocalDataset

        self._check()
        root = Path(root or self.dataset_edit.text()).expanduser()
        if (root / "dataset.json").is_file():
            ds = LocalDataset(root)
        else:
            ds = LocalDataset.create(root, self.state.table)
        case = ds.add_case(self.state.image, self.state.labels_image(), self.state.table, map_by_name=True)
        self.status.setText(f"Added case {case} to {root} ({len(ds.cases())} cases).")
        self.exported.emit(str(root))
        return case

    def save_labels(self, path: str | Path) -> Path:
        """Write the current labels to ``path`` (.nii/.nii.gz, .seg.nrrd, .nrrd, .mha; .dcm: DICOM SEG)."""
        from lkseg.io.export import write_labels

        self._check()
        if str(path).lower().endswith(".dcm"):
            return self.save_dicom_seg(path)
        out = write_labels(self.state.labels_image(), self.state.table, path)
        self.status.setText(f"Saved {out.name}.")
        return out

    def save_dicom_seg(self, path: str | Path) -> Path:
        """A DICOM SEG over the DICOM series the volume came from; organs changed by hand are MANUAL."""
        from lkseg.dicom import changed_values, load_source_series, write_dicom_seg

        self._check()
        if not self.state.image_path or not Path(self.state.image_path).is_dir():
            raise ValueError("DICOM SEG needs a DICOM source: open the DICOM series folder the labels belong to "
                             "(this volume came from a file without DICOM identity); save as NIfTI or .seg.nrrd")
        manual = changed_values(self.state.model_labels, self.state.labels)
        out = write_dicom_seg(self.state.labels_image(), self.state.table, load_source_series(self.state.image_path),
                              path, algorithm=self.state.algorithm, manual_values=manual)
        corrected = f"; corrected by hand: {', '.join(self.state.table.by_value(v).name for v in sorted(manual))}" \
            if manual and self.state.algorithm is not None else ""
        self.status.setText(f"Saved DICOM SEG {Path(out).name}{corrected}.")
        return out

    def _save_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save labels", "labels.nii.gz",
                                              "NIfTI (*.nii.gz *.nii);;Slicer segmentation (*.seg.nrrd);;"
                                              "DICOM SEG (*.dcm)")
        if path:
            self._guard(self.save_labels, path)
