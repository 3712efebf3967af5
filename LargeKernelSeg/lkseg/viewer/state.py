"""What the viewer's widgets share: the image, the label map, the cursor and the display settings."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from PyQt5.QtCore import QObject, pyqtSignal

from lkseg.io.image import Image
from lkseg.viewer.editing import LabelEditor

log = logging.getLogger(__name__)

#: window/level presets (width, level) in HU
PRESETS: dict[str, tuple[float, float]] = {
    "abdomen": (400.0, 40.0),
    "lung": (1500.0, -600.0),
    "bone": (1800.0, 400.0),
    "brain": (80.0, 40.0),
}


class ViewerState(QObject):
    """Image, labels, label table, cursor and display settings; emits when any of them change."""

    imageChanged = pyqtSignal()
    labelsChanged = pyqtSignal()
    cursorChanged = pyqtSignal()
    displayChanged = pyqtSignal()

    def __init__(self) -> None:
        super().__init__()
        self.image: Image | None = None
        self.image_path: str | None = None
        self.labels: np.ndarray | None = None
        self.table: Any = None
        self.editor: LabelEditor | None = None
        #: the network's label map and who made it (lkseg.dicom.Algorithm), kept to tell corrected organs apart
        self.model_labels: np.ndarray | None = None
        self.algorithm: Any = None
        self.cursor = [0, 0, 0]  # k, j, i
        self.window, self.level = PRESETS["abdomen"]
        self.opacity = 0.5
        self.hidden: set[int] = set()
        self.active_label = 1
        self.tool = "navigate"  # navigate | paint | erase | fill | erase_component
        self.brush_radius = 3.0
        self.sphere = False

    # ---------------------------------------------------------------- data
    def set_image(self, image: Image, path: str | None = None) -> None:
        self.image, self.image_path = image, path
        self.cursor = [s // 2 for s in image.array.shape]
        self.set_labels(np.zeros(image.array.shape, dtype=np.uint8), self.table)
        self.imageChanged.emit()

    def set_labels(self, labels: np.ndarray, table: Any, algorithm: Any = None) -> None:
        """Replace the label map (a fresh undo history) and the label table; ``algorithm`` says a network
        made these labels (anything changed afterwards counts as corrected by hand)."""
        if self.image is not None and labels.shape != self.image.array.shape:
            raise ValueError(f"label map shape {labels.shape} differs from the image's {self.image.array.shape}")
        self.labels = np.ascontiguousarray(labels)
        self.algorithm = algorithm
        self.model_labels = self.labels.copy() if algorithm is not None else None
        if table is not None:
            self.table = table
        spacing = self.image.spacing if self.image is not None else (1.0, 1.0, 1.0)
        self.editor = LabelEditor(self.labels, spacing)
        if self.table is not None and self.table.values and self.active_label not in self.table.values:
            self.active_label = self.table.values[0]
        self.labelsChanged.emit()

    def labels_image(self) -> Image | None:
        if self.image is None or self.labels is None:
            return None
        return self.image.with_array(self.labels.copy())

    def set_cursor(self, kji: list[int] | tuple[int, int, int]) -> None:
        if self.image is None:
            return
        shape = self.image.array.shape
        new = [int(min(max(v, 0), s - 1)) for v, s in zip(kji, shape)]
        if new != self.cursor:
            self.cursor = new
            self.cursorChanged.emit()

    # ---------------------------------------------------------------- display
    def set_window(self, width: float, level: float) -> None:
        self.window, self.level = max(1.0, float(width)), float(level)
        self.displayChanged.emit()

    def set_preset(self, name: str) -> None:
        self.set_window(*PRESETS[name])

    def set_opacity(self, value: float) -> None:
        self.opacity = float(min(max(value, 0.0), 1.0))
        self.displayChanged.emit()

    def set_visible(self, value: int, visible: bool) -> None:
        (self.hidden.discard if visible else self.hidden.add)(int(value))
        self.displayChanged.emit()

    def lut(self) -> tuple[np.ndarray, np.ndarray]:
        """(colours [256, 3] uint8, alpha [256] float) for the overlay, background transparent."""
        colors = np.zeros((256, 3), dtype=np.uint8)
        alpha = np.zeros(256, dtype=np.float32)
        if self.table is not None:
            for lab in self.table.labels:
                if 0 < lab.value < 256:
                    colors[lab.value] = lab.color
                    alpha[lab.value] = 0.0 if lab.value in self.hidden else self.opacity
        return colors, alpha
