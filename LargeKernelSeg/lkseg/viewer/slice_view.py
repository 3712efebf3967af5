"""One orthogonal slice view (axial, coronal or sagittal) drawn with QPainter.

Wheel scrolls slices, Ctrl+wheel zooms, right or middle drag pans, left click moves the linked
crosshair; with a brush tool selected, left drag paints/erases through the shared
:class:`~lkseg.viewer.editing.LabelEditor` (one undo step per stroke).
"""

from __future__ import annotations

import numpy as np
from PyQt5.QtCore import QPoint, QPointF, QRectF, Qt, pyqtSignal
from PyQt5.QtGui import QColor, QFont, QImage, QPainter, QPen
from PyQt5.QtWidgets import QSizePolicy, QWidget

from lkseg.viewer.state import ViewerState

#: axis -> (name, row axis, column axis, (LPS axis, sign) wanted along screen rows (downwards) and columns)
#: radiological convention: patient right on the left, anterior up (axial), superior up (coronal, sagittal)
PLANES = {0: ("Axial", 1, 2, ((1, 1), (0, 1))), 1: ("Coronal", 0, 2, ((2, -1), (0, 1))),
          2: ("Sagittal", 0, 1, ((2, -1), (1, 1)))}


def _flipped(direction: np.ndarray, array_axis: int, want: tuple[int, int]) -> bool:
    """Whether array axis ``array_axis`` (0=k, 1=j, 2=i) runs against the wanted LPS direction on screen."""
    column = np.asarray(direction, dtype=float)[:, 2 - array_axis]
    return bool(np.sign(column[want[0]] or 1.0) != want[1])
ACCENT = {0: QColor(230, 90, 90), 1: QColor(90, 200, 110), 2: QColor(230, 200, 70)}


class SliceView(QWidget):
    """A slice of ``state.image`` normal to array axis ``axis`` (0=k axial, 1=j coronal, 2=i sagittal)."""

    edited = pyqtSignal()

    def __init__(self, state: ViewerState, axis: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state, self.axis = state, axis
        self.name, self.row_axis, self.col_axis, self._want = PLANES[axis]
        self.zoom, self.pan = 1.0, QPointF(0, 0)
        self._drag: tuple[str, QPoint] | None = None
        self._last_voxel: tuple[int, int, int] | None = None
        self._hover: QPointF | None = None
        self._qimage: QImage | None = None
        self._buffer: np.ndarray | None = None
        self.setMinimumSize(200, 200)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.StrongFocus)
        for sig in (state.imageChanged, state.labelsChanged, state.cursorChanged, state.displayChanged):
            sig.connect(self._invalidate)
        self.setObjectName(f"slice_{self.name.lower()}")

    # ---------------------------------------------------------------- geometry
    def slice_index(self) -> int:
        return self.state.cursor[self.axis]

    def _flips(self) -> tuple[bool, bool]:
        d = self.state.image.direction
        return _flipped(d, self.row_axis, self._want[0]), _flipped(d, self.col_axis, self._want[1])

    def _shape_rc(self) -> tuple[int, int]:
        shape = self.state.image.array.shape
        return shape[self.row_axis], shape[self.col_axis]

    def _spacing_rc(self) -> tuple[float, float]:
        sp_kji = self.state.image.spacing[::-1]
        return float(sp_kji[self.row_axis]), float(sp_kji[self.col_axis])

    def image_rect(self) -> QRectF:
        """Where the slice is drawn in widget coordinates (aspect from the voxel spacing)."""
        nr, nc = self._shape_rc()
        sr, sc = self._spacing_rc()
        h_mm, w_mm = nr * sr, nc * sc
        scale = min(self.width() / w_mm, self.height() / h_mm) * self.zoom
        w, h = w_mm * scale, h_mm * scale
        x = (self.width() - w) / 2 + self.pan.x()
        y = (self.height() - h) / 2 + self.pan.y()
        return QRectF(x, y, w, h)

    def voxel_at(self, pos: QPoint | QPointF) -> tuple[int, int, int] | None:
        """The voxel (k, j, i) under widget position ``pos``, or None outside the slice."""
        if self.state.image is None:
            return None
        rect = self.image_rect()
        nr, nc = self._shape_rc()
        c = int(np.floor((pos.x() - rect.x()) / rect.width() * nc))
        r = int(np.floor((pos.y() - rect.y()) / rect.height() * nr))
        if not (0 <= r < nr and 0 <= c < nc):
            return None
        return self._voxel_from_rc(r, c)

    def _voxel_from_rc(self, r: int, c: int) -> tuple[int, int, int]:
        nr, nc = self._shape_rc()
        fr, fc = self._flips()
        kji = list(self.state.cursor)
        kji[self.row_axis] = nr - 1 - r if fr else r
        kji[self.col_axis] = nc - 1 - c if fc else c
        return tuple(kji)  # type: ignore[return-value]

    def widget_pos_of(self, kji: tuple[int, int, int]) -> QPointF:
        """Widget position of the centre of voxel ``kji`` projected on this view."""
        rect = self.image_rect()
        nr, nc = self._shape_rc()
        fr, fc = self._flips()
        r, c = kji[self.row_axis], kji[self.col_axis]
        r, c = (nr - 1 - r if fr else r), (nc - 1 - c if fc else c)
        return QPointF(rect.x() + (c + 0.5) * rect.width() / nc,
                       rect.y() + (r + 0.5) * rect.height() / nr)

    # ---------------------------------------------------------------- rendering
    def _take(self, volume: np.ndarray) -> np.ndarray:
        s = np.take(volume, self.slice_index(), axis=self.axis)  # rows = row_axis, cols = col_axis
        fr, fc = self._flips()
        return s[::-1 if fr else 1, ::-1 if fc else 1]

    def render_rgb(self) -> np.ndarray:
        """The slice as an RGB array (grey values under the label overlay)."""
        st = self.state
        img = self._take(st.image.array).astype(np.float32)
        lo = st.level - st.window / 2
        grey = np.clip((img - lo) / st.window * 255.0, 0, 255)
        rgb = np.repeat(grey[..., None], 3, axis=2)
        if st.labels is not None:
            lab = np.clip(self._take(st.labels), 0, 255).astype(np.intp)
            colors, alpha = st.lut()
            a = alpha[lab][..., None]
            rgb = rgb * (1 - a) + colors[lab].astype(np.float32) * a
        return np.ascontiguousarray(rgb.astype(np.uint8))

    def _invalidate(self) -> None:
        self._qimage = None
        self.update()

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt API)
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(12, 14, 18))
        if self.state.image is None:
            p.setPen(QColor(120, 128, 140))
            p.drawText(self.rect(), Qt.AlignCenter, f"{self.name}\n\nDrop a CT/MR volume here")
            p.end()
            return
        if self._qimage is None:
            self._buffer = self.render_rgb()
            h, w, _ = self._buffer.shape
            self._qimage = QImage(self._buffer.data, w, h, 3 * w, QImage.Format_RGB888)
        rect = self.image_rect()
        p.drawImage(rect, self._qimage)  # nearest-neighbour: no SmoothPixmapTransform
        # crosshair
        c = self.widget_pos_of(tuple(self.state.cursor))
        pen = QPen(QColor(80, 170, 255, 150))
        pen.setWidth(1)
        p.setPen(pen)
        p.drawLine(QPointF(rect.left(), c.y()), QPointF(rect.right(), c.y()))
        p.drawLine(QPointF(c.x(), rect.top()), QPointF(c.x(), rect.bottom()))
        # brush outline under the mouse
        if self.state.tool not in ("paint", "erase"):
            self._hover = None
        if self._hover is not None:
            nr, nc = self._shape_rc()
            rx = (self.state.brush_radius + 0.5) * rect.width() / nc
            ry = (self.state.brush_radius + 0.5) * rect.height() / nr
            p.setPen(QPen(QColor(255, 255, 255, 200), 1, Qt.DashLine))
            p.drawEllipse(self._hover, rx, ry)
        # annotations
        n = self.state.image.array.shape[self.axis]
        self._label(p, 18, f"{self.name}  {self.slice_index() + 1}/{n}", ACCENT[self.axis], 10, True)
        self._label(p, self.height() - 8, f"W {self.state.window:.0f}  L {self.state.level:.0f}  zoom {self.zoom:.1f}x",
                    QColor(170, 176, 186), 9, False)
        p.setPen(QPen(ACCENT[self.axis], 2))
        p.drawRect(self.rect().adjusted(0, 0, -1, -1))
        p.end()

    def _label(self, p: QPainter, baseline: int, text: str, color: QColor, size: int, bold: bool) -> None:
        """Text on a translucent dark plate so it stays readable over the image."""
        font = QFont(self.font().family(), size, QFont.Bold if bold else QFont.Normal)
        p.setFont(font)
        w = p.fontMetrics().horizontalAdvance(text)
        h = p.fontMetrics().height()
        p.fillRect(QRectF(4, baseline - h + 3, w + 8, h + 2), QColor(10, 12, 16, 170))
        p.setPen(color)
        p.drawText(8, baseline, text)

    # ---------------------------------------------------------------- interaction
    def wheelEvent(self, event) -> None:  # noqa: N802
        if self.state.image is None:
            return
        steps = event.angleDelta().y() / 120.0
        if event.modifiers() & Qt.ControlModifier:
            self.zoom = float(min(max(self.zoom * (1.15 ** steps), 0.25), 20.0))
            self.update()
        else:
            kji = list(self.state.cursor)
            kji[self.axis] += int(np.sign(steps)) if steps else 0
            self.state.set_cursor(kji)

    def keyPressEvent(self, event) -> None:  # noqa: N802
        if self.state.image is not None and event.key() in (Qt.Key_Up, Qt.Key_Down, Qt.Key_PageUp, Qt.Key_PageDown):
            kji = list(self.state.cursor)
            kji[self.axis] += 1 if event.key() in (Qt.Key_Up, Qt.Key_PageUp) else -1
            self.state.set_cursor(kji)
        else:
            super().keyPressEvent(event)

    def mousePressEvent(self, event) -> None:  # noqa: N802
        if self.state.image is None:
            return
        if event.button() in (Qt.RightButton, Qt.MiddleButton):
            self._drag = ("pan", event.pos())
            return
        if event.button() != Qt.LeftButton:
            return
        voxel = self.voxel_at(event.pos())
        if voxel is None:
            return
        tool = self.state.tool
        ed = self.state.editor
        if tool in ("paint", "erase") and ed is not None:
            ed.begin_stroke(tool)
            self._drag = ("brush", event.pos())
            self._last_voxel = voxel
            self._dab(voxel)
        elif tool == "fill" and ed is not None:
            ed.fill_component(voxel, self.state.active_label)
            self._changed()
        elif tool == "erase_component" and ed is not None:
            ed.erase_component(voxel)
            self._changed()
        else:
            self._drag = ("cursor", event.pos())
            self.state.set_cursor(voxel)

    def mouseMoveEvent(self, event) -> None:  # noqa: N802
        if self.state.tool in ("paint", "erase"):
            self._hover = QPointF(event.pos())
            self.update()
        if self._drag is None:
            return
        kind, last = self._drag
        if kind == "pan":
            d = event.pos() - last
            self.pan += QPointF(d.x(), d.y())
            self._drag = ("pan", event.pos())
            self.update()
            return
        voxel = self.voxel_at(event.pos())
        if voxel is None:
            return
        if kind == "cursor":
            self.state.set_cursor(voxel)
        elif kind == "brush":
            start = self._last_voxel or voxel
            n = int(max(abs(a - b) for a, b in zip(start, voxel)))
            for t in np.linspace(0, 1, n + 1)[1:] if n else [1.0]:
                self._dab(tuple(int(round(a + (b - a) * t)) for a, b in zip(start, voxel)))
            self._last_voxel = voxel

    def leaveEvent(self, event) -> None:  # noqa: N802
        self._hover = None
        self.update()

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802
        if self._drag is not None and self._drag[0] == "brush" and self.state.editor is not None:
            self.state.editor.end_stroke()
            self._changed()
        self._drag, self._last_voxel = None, None

    def _dab(self, voxel: tuple[int, int, int]) -> None:
        st = self.state
        if st.tool == "paint":
            st.editor.paint(voxel, st.brush_radius, st.active_label, axis=self.axis, sphere=st.sphere)
        else:
            st.editor.erase(voxel, st.brush_radius, axis=self.axis, sphere=st.sphere)
        self._invalidate()

    def _changed(self) -> None:
        self.state.labelsChanged.emit()
        self.edited.emit()
