"""The user's remembered choices, shared by every front end (the Slicer panel, the desktop
viewer): recently used checkpoints and the local dataset folder.

Kept in a small JSON file (``settings.json``) in a per-user settings folder, written atomically
(temporary file in the same folder, fsync, ``os.replace``). A damaged file is ignored, with a
warning in the log, rather than breaking the panel.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from lkseg.utils.atomic import atomic_write_text

log = logging.getLogger(__name__)

MAX_RECENT = 8


def default_settings_dir() -> Path:
    """``$LKSEG_SETTINGS_DIR``, else the platform's per-user configuration folder + LargeKernelSeg."""
    if os.environ.get("LKSEG_SETTINGS_DIR"):
        return Path(os.environ["LKSEG_SETTINGS_DIR"])
    if os.name == "nt" and os.environ.get("APPDATA"):
        return Path(os.environ["APPDATA"]) / "LargeKernelSeg"
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "LargeKernelSeg"


class UserSettings:
    """Recent checkpoints (most recent first, unique, at most ``max_recent``) and the dataset folder."""

    def __init__(self, folder: Path | None = None, max_recent: int = MAX_RECENT) -> None:
        self.path = Path(folder or default_settings_dir()) / "settings.json"
        self.max_recent = max_recent

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable settings file %s: %s", self.path, exc)
            return {}
        if not isinstance(data, dict):
            log.warning("ignoring settings file %s: not a JSON object", self.path)
            return {}
        return data

    def _write(self, data: dict[str, Any]) -> None:
        atomic_write_text(self.path, json.dumps(data, indent=2) + "\n")

    def recent_checkpoints(self) -> list[str]:
        """Remembered checkpoint paths, most recent first (only strings, no duplicates)."""
        items = self._read().get("recent_checkpoints", [])
        out: list[str] = []
        for item in items if isinstance(items, list) else []:
            if isinstance(item, str) and item and item not in out:
                out.append(item)
        return out[: self.max_recent]

    def add_recent_checkpoint(self, path: str | Path) -> list[str]:
        """Put ``path`` first in the recent list (moving it if present) and save."""
        entry = str(Path(path).expanduser().resolve())
        items = [entry] + [p for p in self.recent_checkpoints() if p != entry]
        data = self._read()
        data["recent_checkpoints"] = items[: self.max_recent]
        self._write(data)
        return data["recent_checkpoints"]

    def remove_recent_checkpoint(self, path: str | Path) -> list[str]:
        """Forget ``path`` (e.g. the file was deleted) and save."""
        entry = str(Path(path).expanduser().resolve())
        data = self._read()
        data["recent_checkpoints"] = [p for p in self.recent_checkpoints() if p not in (entry, str(path))]
        self._write(data)
        return data["recent_checkpoints"]

    def dataset_folder(self) -> str:
        """The local dataset folder chosen before, or "" if none."""
        value = self._read().get("dataset_folder", "")
        return value if isinstance(value, str) else ""

    def set_dataset_folder(self, folder: str | Path) -> None:
        data = self._read()
        data["dataset_folder"] = str(folder)
        self._write(data)
