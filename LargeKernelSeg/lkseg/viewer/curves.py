"""A small QPainter plot of training loss and validation Dice against the step."""

from __future__ import annotations

from PyQt5.QtCore import QPointF, QRectF, Qt
from PyQt5.QtGui import QColor, QFont, QPainter, QPainterPath, QPen
from PyQt5.QtWidgets import QSizePolicy, QWidget

LOSS = QColor(255, 150, 70)
DICE = QColor(90, 200, 255)


class CurvePlot(QWidget):
    """Loss (left axis, auto-scaled) and validation Dice (right axis, 0-1) curves."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.loss: list[tuple[float, float]] = []
        self.dice: list[tuple[float, float]] = []
        self.total_steps: int | None = None
        self.setMinimumHeight(150)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)

    def set_records(self, records: list[dict], total_steps: int | None = None) -> None:
        """Take ``progress.jsonl`` records (``step``, ``loss``, ``val_dice``)."""
        self.loss = [(float(r["step"]), float(r["loss"])) for r in records
                     if isinstance(r.get("step"), (int, float)) and r.get("loss") is not None]
        self.dice = [(float(r["step"]), float(r["val_dice"])) for r in records
                     if isinstance(r.get("step"), (int, float)) and r.get("val_dice") is not None]
        self.total_steps = total_steps
        self.update()

    def paintEvent(self, event) -> None:  # noqa: N802
        p = QPainter(self)
        p.setRenderHint(QPainter.Antialiasing)
        p.fillRect(self.rect(), QColor(20, 23, 29))
        plot = QRectF(self.rect()).adjusted(42, 22, -38, -24)
        p.setPen(QPen(QColor(55, 60, 70), 1))
        for f in (0.0, 0.25, 0.5, 0.75, 1.0):
            y = plot.bottom() - f * plot.height()
            p.drawLine(QPointF(plot.left(), y), QPointF(plot.right(), y))
        p.setFont(QFont(self.font().family(), 8))
        xmax = max([s for s, _ in self.loss + self.dice] + [float(self.total_steps or 1), 1.0])
        lmax = max([v for _, v in self.loss] + [1e-6]) * 1.1
        p.setPen(LOSS)
        p.drawText(QRectF(0, plot.top() - 6, 38, 12), Qt.AlignRight, f"{lmax:.2f}")
        p.drawText(QRectF(0, plot.bottom() - 6, 38, 12), Qt.AlignRight, "0")
        p.drawText(int(plot.left()), 14, "loss")
        p.setPen(DICE)
        p.drawText(QRectF(plot.right() + 4, plot.top() - 6, 34, 12), Qt.AlignLeft, "1.0")
        p.drawText(QRectF(plot.right() + 4, plot.bottom() - 6, 34, 12), Qt.AlignLeft, "0")
        p.drawText(int(plot.left()) + 40, 14, "val Dice")
        p.setPen(QColor(150, 156, 166))
        p.drawText(QRectF(plot.left(), plot.bottom() + 4, plot.width(), 16), Qt.AlignRight, f"step {int(xmax)}")
        for pts, color, top in ((self.loss, LOSS, lmax), (self.dice, DICE, 1.0)):
            if not pts:
                continue
            path = QPainterPath()
            for n, (s, v) in enumerate(pts):
                pt = QPointF(plot.left() + s / xmax * plot.width(), plot.bottom() - min(v / top, 1.0) * plot.height())
                path.moveTo(pt) if n == 0 else path.lineTo(pt)
            p.setPen(QPen(color, 2))
            p.drawPath(path)
            if color == DICE:
                for s, v in pts:
                    p.setBrush(color)
                    p.drawEllipse(QPointF(plot.left() + s / xmax * plot.width(),
                                          plot.bottom() - min(v, 1.0) * plot.height()), 3, 3)
        if not self.loss:
            p.setPen(QColor(110, 116, 126))
            p.drawText(plot, Qt.AlignCenter, "Loss and validation Dice appear here while training")
        p.end()
