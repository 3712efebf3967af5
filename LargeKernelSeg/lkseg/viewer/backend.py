"""The viewer's link to the core: which segmentation client to use, and the recent-checkpoint list.

Segmentation goes through :class:`lkseg.service.client.WorkerClient` (a separate process, so a
crash never takes the window down). If this installation has no worker module, an in-process
client with the same ``segment`` signature runs :class:`lkseg.inference.Segmenter` instead; the
viewer calls it from a QThread either way.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any, Callable

from lkseg.io.image import Image
from lkseg.app.settings import UserSettings

log = logging.getLogger(__name__)


class InProcessClient:
    """Same interface as ``WorkerClient``; keeps the last checkpoint loaded."""

    def __init__(self, device: str = "auto") -> None:
        self.device = device
        self._segmenter: Any = None
        self._path: str | None = None
        self._cancel: threading.Event | None = None

    def segment(self, image: Image, checkpoint: str | os.PathLike, progress: Callable[[float, str], None] | None = None,
                cancel_event: threading.Event | None = None, **options: Any) -> Any:
        from lkseg.inference.segmenter import Segmenter

        path = str(Path(checkpoint).resolve())
        if self._segmenter is None or self._path != path:
            if progress:
                progress(0.0, "loading model")
            self._segmenter, self._path = Segmenter.from_checkpoint(path, self.device), path
        self._cancel = cancel_event or threading.Event()
        return self._segmenter.segment(image, progress=progress, cancel=self._cancel, **options)

    def cancel(self) -> None:
        if self._cancel is not None:
            self._cancel.set()

    def close(self) -> None:
        self._segmenter = None


def make_client(device: str = "auto") -> Any:
    """A ``WorkerClient`` from the core when available, else :class:`InProcessClient`."""
    for module in ("lkseg.service.client", "lkseg.service.worker"):
        try:
            mod = __import__(module, fromlist=["WorkerClient"])
            return mod.WorkerClient(device=device)
        except (ImportError, AttributeError):
            continue
    log.info("no lkseg worker module; segmenting in-process")
    return InProcessClient(device)


def recent_checkpoints() -> list[Path]:
    """Recently used checkpoints that still exist (shared with the Slicer panel's list)."""
    return [Path(p) for p in UserSettings().recent_checkpoints() if Path(p).is_file()]


def remember_checkpoint(path: str | os.PathLike) -> None:
    """Put ``path`` first in the recent list (best effort: a read-only home only logs)."""
    try:
        UserSettings().add_recent_checkpoint(path)
    except OSError as exc:
        log.warning("could not save the recent checkpoint list: %s", exc)


def bundled_checkpoints() -> list[tuple[str, Path]]:
    """(``"Bundled: <title> (<modality>)"``, path) of each bundled model, the default first."""
    try:
        from lkseg.app.resources import bundled_models
    except ImportError:
        return []
    return [(f"Bundled: {entry.label}", path) for entry, path in bundled_models()]


def default_checkpoint() -> Path | None:
    """The bundled default model (Resources/Models/default_model.safetensors), if installed."""
    try:
        from lkseg.app.resources import default_model
    except ImportError:
        return None
    return default_model()
