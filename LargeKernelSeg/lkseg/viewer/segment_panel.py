"""Segment panel: checkpoint choice (bundled default, recent, browse), Segment with progress and Cancel.

The segmentation runs in a QThread calling ``WorkerClient.segment``, so the window keeps
repainting; Cancel sets the request's cancel event and asks the client to stop.
"""

from __future__ import annotations

import logging
import threading
import traceback
from pathlib import Path
from typing import Any

from PyQt5.QtCore import QThread, pyqtSignal
from PyQt5.QtWidgets import (QComboBox, QFileDialog, QGroupBox, QHBoxLayout, QLabel, QProgressBar, QPushButton,
                             QVBoxLayout, QWidget)

from lkseg.viewer import backend
from lkseg.viewer.state import ViewerState

log = logging.getLogger(__name__)


class SegmentThread(QThread):
    """Runs one ``client.segment`` call; reports progress, the result or the error."""

    progressed = pyqtSignal(float, str)
    succeeded = pyqtSignal(object)
    failed = pyqtSignal(str)

    def __init__(self, client: Any, image: Any, checkpoint: Path) -> None:
        super().__init__()
        self.client, self.image, self.checkpoint = client, image, checkpoint
        self.cancel_event = threading.Event()

    def run(self) -> None:
        try:
            result = self.client.segment(self.image, self.checkpoint, progress=lambda f, s: self.progressed.emit(f, s),
                                         cancel_event=self.cancel_event)
        except Exception as exc:  # shown to the user; the window stays up
            from lkseg.errors import Cancelled

            if isinstance(exc, Cancelled) or self.cancel_event.is_set():
                self.failed.emit("Cancelled")
            else:
                log.debug("segmentation failed:\n%s", traceback.format_exc())
                self.failed.emit(f"Segmentation failed: {exc}")
            return
        self.succeeded.emit(result)


class SegmentPanel(QGroupBox):
    """Checkpoint picker plus Segment/Cancel; puts the result into the shared state."""

    segmented = pyqtSignal(object)

    def __init__(self, state: ViewerState, parent: QWidget | None = None) -> None:
        super().__init__("Segment", parent)
        self.state = state
        self.client: Any = None
        self.thread: SegmentThread | None = None
        self.last_result: Any = None
        self.combo = QComboBox()
        self.combo.setToolTip("Checkpoint: the bundled default, a recently used one, or Browse...")
        self.browse = QPushButton("Browse…")
        self.run_button = QPushButton("Segment")
        self.run_button.setObjectName("primary")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(True)
        self.progress.setFormat("")
        self.status = QLabel("Open a volume, pick a checkpoint, press Segment.")
        self.status.setWordWrap(True)
        self.status.setObjectName("hint")
        row = QHBoxLayout()
        row.addWidget(self.combo, 1)
        row.addWidget(self.browse)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button, 1)
        buttons.addWidget(self.cancel_button)
        lay = QVBoxLayout(self)
        lay.addLayout(row)
        lay.addLayout(buttons)
        lay.addWidget(self.progress)
        lay.addWidget(self.status)
        self.browse.clicked.connect(self._browse)
        self.run_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.combo.currentIndexChanged.connect(self._checkpoint_changed)
        self.refresh_checkpoints()

    # ---------------------------------------------------------------- checkpoints
    def refresh_checkpoints(self, select: Path | None = None) -> None:
        self.combo.blockSignals(True)
        self.combo.clear()
        seen: set[Path] = set()
        bundled = backend.bundled_checkpoints()
        names = {path.resolve(): text for text, path in bundled}
        entries: list[tuple[str, Path]] = []
        if select is not None:
            entries.append((names.get(Path(select).resolve(), Path(select).name), Path(select)))
        entries += bundled
        entries += [(p.name, p) for p in backend.recent_checkpoints()]
        for text, path in entries:
            r = path.resolve()
            if r in seen:
                continue
            seen.add(r)
            self.combo.addItem(text, str(r))
            self.combo.setItemData(self.combo.count() - 1, str(r), 3)  # tooltip role
        self.combo.blockSignals(False)
        self._checkpoint_changed()

    def set_checkpoint(self, path: str | Path) -> None:
        """Select ``path`` (adds it to the recent list) and take its label table if no labels are shown yet."""
        backend.remember_checkpoint(path)
        self.refresh_checkpoints(select=Path(path))

    def checkpoint(self) -> Path | None:
        data = self.combo.currentData()
        return Path(data) if data else None

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open checkpoint", "", "Checkpoints (*.safetensors);;All files (*)")
        if path:
            self.set_checkpoint(path)

    def _checkpoint_changed(self) -> None:
        ckpt = self.checkpoint()
        if ckpt is None:
            return
        try:
            from lkseg.checkpoint.native import read_card

            card = read_card(ckpt)
        except Exception as exc:
            self.status.setText(f"Cannot read {ckpt.name}: {exc}")
            return
        self.status.setText(f"{card.architecture} · {len(card.labels.values)} labels: "
                            + ", ".join(card.labels.names[:6]) + ("…" if len(card.labels.names) > 6 else ""))
        if self.state.labels is None or not self.state.labels.any():
            self.state.table = card.labels  # show the model's organs before anything is segmented
            if self.state.labels is not None:
                self.state.set_labels(self.state.labels, card.labels)
            else:
                self.state.labelsChanged.emit()

    # ---------------------------------------------------------------- run
    @property
    def busy(self) -> bool:
        return self.thread is not None and self.thread.isRunning()

    def start(self) -> bool:
        ckpt = self.checkpoint()
        if self.state.image is None or ckpt is None or self.busy:
            self.status.setText("Open a volume and pick a checkpoint first." if not self.busy else "Already running.")
            return False
        if self.client is None:
            self.client = backend.make_client()
        self.thread = SegmentThread(self.client, self.state.image, ckpt)
        self.thread.progressed.connect(self._progress)
        self.thread.succeeded.connect(self._done)
        self.thread.failed.connect(self._failed)
        self.thread.finished.connect(self._finished)
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setValue(0)
        self.status.setText(f"Segmenting with {ckpt.name}…")
        self.thread.start()
        return True

    def cancel(self) -> None:
        if self.busy:
            self.thread.cancel_event.set()
            try:
                self.client.cancel()
            except Exception as exc:
                log.warning("cancel failed: %s", exc)
            self.status.setText("Cancelling…")

    def _progress(self, fraction: float, stage: str) -> None:
        self.progress.setValue(int(1000 * fraction))
        self.progress.setFormat(f"{stage} %p%")

    def _done(self, result: Any) -> None:
        self.last_result = result
        self.state.set_labels(result.labels.array.astype("uint8" if result.table.num_classes <= 256 else "int16"),
                              result.table, algorithm=self._algorithm())
        secs = result.timings.get("total", 0.0)
        notes = " ".join(f"Warning: {n}." for n in getattr(result, "notes", []) or [])
        self.status.setText(f"Done in {secs:.1f} s on {result.device}." + (f" {notes}" if notes else ""))
        self.progress.setValue(1000)
        self.progress.setFormat("done")
        self.segmented.emit(result)

    def _algorithm(self) -> Any:
        """Who made the labels, for a DICOM SEG: the checkpoint that ran (None if it cannot be read now)."""
        from lkseg.checkpoint.native import read_card
        from lkseg.dicom import algorithm_of

        ckpt = self.thread.checkpoint if self.thread is not None else self.checkpoint()
        try:
            return algorithm_of(read_card(ckpt), ckpt)
        except Exception as exc:  # noqa: BLE001 - provenance is best effort; the labels are still shown
            log.warning("cannot identify the checkpoint %s: %s", ckpt, exc)
            return None

    def _failed(self, message: str) -> None:
        self.status.setText(message)
        self.progress.setFormat(message.split(":")[0])

    def _finished(self) -> None:
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)

    def shutdown(self) -> None:
        self.cancel()
        if self.thread is not None:
            self.thread.wait(5000)
        if self.client is not None:
            self.client.close()
