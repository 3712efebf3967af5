"""The segment list: name, colour, visibility and volume (mL) of each label; picks the active label."""

from __future__ import annotations

import numpy as np
from PyQt5.QtCore import Qt
from PyQt5.QtGui import QColor, QIcon, QPixmap
from PyQt5.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem, QWidget

from lkseg.io.export import label_voxel_counts
from lkseg.viewer.state import ViewerState


def swatch(rgb: tuple[int, int, int], size: int = 14) -> QIcon:
    pm = QPixmap(size, size)
    pm.fill(QColor(*rgb))
    return QIcon(pm)


class SegmentList(QTableWidget):
    """One row per label of ``state.table``; the check box toggles visibility, a click selects it for painting."""

    def __init__(self, state: ViewerState, parent: QWidget | None = None) -> None:
        super().__init__(0, 2, parent)
        self.state = state
        self.setHorizontalHeaderLabels(["Segment", "Volume (mL)"])
        self.horizontalHeader().setSectionResizeMode(0, QHeaderView.Stretch)
        self.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeToContents)
        self.verticalHeader().setVisible(False)
        self.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.setSelectionMode(QAbstractItemView.SingleSelection)
        self.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self._values: list[int] = []
        self._updating = False
        state.labelsChanged.connect(self.refresh)
        self.itemChanged.connect(self._item_changed)
        self.itemSelectionChanged.connect(self._selected)

    def volumes_ml(self) -> dict[int, float]:
        """Volume of each label value in mL from the current label map."""
        st = self.state
        if st.labels is None or st.image is None:
            return {}
        counts = label_voxel_counts(st.labels, minlength=256)
        voxel_ml = float(np.prod(st.image.spacing)) / 1000.0
        return {v: float(counts[v]) * voxel_ml for v in self._values if v < len(counts)}

    def refresh(self) -> None:
        table = self.state.table
        self._updating = True
        try:
            values = list(table.values) if table is not None else []
            if values != self._values:
                self._values = values
                self.setRowCount(len(values))
                for row, v in enumerate(values):
                    lab = table.by_value(v)
                    item = QTableWidgetItem(swatch(lab.color), f"{lab.name}")
                    item.setFlags(Qt.ItemIsEnabled | Qt.ItemIsSelectable | Qt.ItemIsUserCheckable)
                    item.setCheckState(Qt.Unchecked if v in self.state.hidden else Qt.Checked)
                    item.setToolTip(f"label value {v}")
                    self.setItem(row, 0, item)
                    vol = QTableWidgetItem("")
                    vol.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
                    vol.setFlags(Qt.ItemIsEnabled | Qt.ItemIsSelectable)
                    self.setItem(row, 1, vol)
                if self.state.active_label in values:
                    self.selectRow(values.index(self.state.active_label))
            vols = self.volumes_ml()
            for row, v in enumerate(self._values):
                self.item(row, 1).setText(f"{vols.get(v, 0.0):.1f}")
        finally:
            self._updating = False

    def _item_changed(self, item: QTableWidgetItem) -> None:
        if self._updating or item.column() != 0:
            return
        self.state.set_visible(self._values[item.row()], item.checkState() == Qt.Checked)

    def _selected(self) -> None:
        rows = self.selectionModel().selectedRows()
        if rows and not self._updating:
            self.state.active_label = self._values[rows[0].row()]
