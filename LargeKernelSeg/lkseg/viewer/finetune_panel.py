"""Fine-tune panel: start a training job on the local dataset, watch its loss/Dice, cancel, load the result.

Jobs go through :mod:`lkseg.jobs` (a detached process with a job folder); while that module is
not installed, the panel runs the same ``python -m lkseg.training`` command line itself in a
QProcess. Either way progress is read from the job folder's ``progress.jsonl`` on a QTimer.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from PyQt5.QtCore import QProcess, QTimer, pyqtSignal
from PyQt5.QtWidgets import (QComboBox, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QProgressBar, QPushButton,
                             QSpinBox, QVBoxLayout, QWidget)

from lkseg.viewer.curves import CurvePlot

log = logging.getLogger(__name__)


def read_progress(job: Path) -> list[dict]:
    """The complete JSON lines of ``job/progress.jsonl`` (a half-written last line is skipped)."""
    try:
        text = (job / "progress.jsonl").read_text()
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


class FinetunePanel(QGroupBox):
    """Start/Cancel/Load for one fine-tuning job at a time."""

    checkpointReady = pyqtSignal(str)

    def __init__(self, dataset_root: callable, checkpoint: callable, parent: QWidget | None = None) -> None:
        """``dataset_root()`` and ``checkpoint()`` give the current dataset folder and parent checkpoint."""
        super().__init__("Fine-tune", parent)
        self._dataset_root, self._checkpoint = dataset_root, checkpoint
        self.job: Path | None = None
        self.process: QProcess | None = None
        self.best: Path | None = None
        self.state = "idle"
        self.records: list[dict] = []
        self.steps = QSpinBox()
        self.steps.setRange(1, 100000)
        self.steps.setValue(200)
        self.device = QComboBox()
        self.device.addItems(["auto", "cpu", "cuda"])
        self.val_every = QSpinBox()
        self.val_every.setRange(1, 100000)
        self.val_every.setValue(50)
        self.start_button = QPushButton("Start fine-tuning")
        self.start_button.setObjectName("primary")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.load_button = QPushButton("Load result")
        self.load_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setFormat("")
        self.plot = CurvePlot()
        self.status = QLabel("Fine-tunes the selected checkpoint on the dataset's cases.")
        self.status.setObjectName("hint")
        self.status.setWordWrap(True)
        form = QFormLayout()
        form.addRow("Steps", self.steps)
        form.addRow("Validate every", self.val_every)
        form.addRow("Device", self.device)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button, 1)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.load_button)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addLayout(buttons)
        lay.addWidget(self.progress)
        lay.addWidget(self.plot, 1)
        lay.addWidget(self.status)
        self.timer = QTimer(self)
        self.timer.setInterval(500)
        self.timer.timeout.connect(self.poll)
        self.start_button.clicked.connect(lambda: self._guard(self.start))
        self.cancel_button.clicked.connect(self.cancel)
        self.load_button.clicked.connect(self.load_result)

    def _guard(self, fn, *a):
        try:
            return fn(*a)
        except Exception as exc:
            self.status.setText(f"Could not start: {exc}")
            return None

    def start(self, extra: list[str] | None = None) -> Path:
        """Start a job (``extra`` adds training options); returns the job folder."""
        root = Path(self._dataset_root()).expanduser()
        ckpt = self._checkpoint()
        if not (root / "dataset.json").is_file():
            raise ValueError(f"{root} is not a dataset yet: add a corrected case with Export first")
        if ckpt is None:
            raise ValueError("pick a checkpoint to fine-tune in the Segment panel")
        self.job = root / "jobs" / time.strftime("viewer-%Y%m%d-%H%M%S")
        argv = ["--dataset", str(root), "--out", str(self.job), "--checkpoint", str(ckpt),
                "--steps", str(self.steps.value()), "--val-every", str(self.val_every.value()),
                "--device", self.device.currentText(), *(extra or [])]
        self.records, self.best = [], None
        try:
            from lkseg import jobs

            self.job = Path(jobs.start_job(argv, out=self.job))
            self.process = None
        except ImportError:
            self.job.mkdir(parents=True, exist_ok=True)
            self.process = QProcess(self)
            self.process.setProcessChannelMode(QProcess.MergedChannels)
            self.process.setStandardOutputFile(str(self.job / "log.txt"))
            self.process.start(sys.executable, ["-m", "lkseg.training", *argv])
        self.state = "running"
        self.start_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.load_button.setEnabled(False)
        self.progress.setRange(0, self.steps.value())
        self.progress.setValue(0)
        self.status.setText(f"Job {self.job.name} started.")
        self.timer.start()
        return self.job

    def _job_state(self) -> tuple[str, str]:
        """(state, error) of the running job."""
        if self.process is not None:
            if self.process.state() != QProcess.NotRunning:
                return "running", ""
            ok = self.process.exitStatus() == QProcess.NormalExit and self.process.exitCode() == 0
            return ("done", "") if ok else ("failed", f"exit code {self.process.exitCode()} (see log.txt)")
        from lkseg import jobs

        st: dict[str, Any] = jobs.job_status(self.job)
        return str(st.get("state", "running")), str(st.get("error") or "")

    def poll(self) -> None:
        """Read the job folder; update progress, curves and buttons."""
        if self.job is None:
            return
        self.records = read_progress(self.job)
        steps = [r for r in self.records if "event" not in r and isinstance(r.get("step"), int)]
        self.plot.set_records(steps, self.steps.value())
        if steps:
            last = steps[-1]
            self.progress.setValue(min(last["step"], self.progress.maximum()))
            eta = last.get("eta_s")
            dice = [r["val_dice"] for r in steps if r.get("val_dice") is not None]
            self.progress.setFormat(f"step {last['step']}/{self.steps.value()}")
            self.status.setText(f"loss {last.get('loss', 0):.4f}" + (f" · val Dice {dice[-1]:.3f}" if dice else "")
                                + (f" · ETA {eta:.0f} s" if isinstance(eta, (int, float)) else ""))
        if self.state != "running":
            return
        state, error = self._job_state()
        if state in ("running", "queued"):
            return
        self.timer.stop()
        self.state = state
        self.start_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        done = [r for r in self.records if r.get("event") == "done"]
        best = Path(done[-1]["best"]) if done and done[-1].get("best") else self.job / "checkpoints" / "best.safetensors"
        if state == "done" and best.is_file():
            self.best = best
            self.load_button.setEnabled(True)
            self.status.setText(f"Finished. Best checkpoint: {best.name}. Press Load result to use it.")
        else:
            self.status.setText(f"Job {state}. {error}".strip())

    def cancel(self) -> None:
        if self.state != "running" or self.job is None:
            return
        if self.process is not None:
            self.process.kill()
            self.process.waitForFinished(3000)
        else:
            from lkseg import jobs

            jobs.cancel_job(self.job)
        self.state = "cancelled"
        self.timer.stop()
        self.start_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.status.setText("Cancelled.")

    def load_result(self) -> None:
        if self.best is not None:
            self.checkpointReady.emit(str(self.best))

    def shutdown(self) -> None:
        """Stop an in-panel process on exit (jobs from lkseg.jobs keep running detached)."""
        if self.process is not None and self.process.state() != QProcess.NotRunning:
            self.process.kill()
            self.process.waitForFinished(3000)
