"""Where the bundled sample CT and default checkpoint live.

They ship in the repository's top-level ``Resources/`` folder (and, inside 3D Slicer, next to
the installed module). ``LKSEG_RESOURCES`` overrides the location.
"""

from __future__ import annotations

import os
from pathlib import Path

SAMPLE_CT = Path("Data") / "sample_ct.nii.gz"
DEFAULT_MODEL = Path("Models") / "default_model.safetensors"


def resources_dir() -> Path | None:
    """The first existing Resources folder: $LKSEG_RESOURCES, the repository's, the module's."""
    candidates = []
    if os.environ.get("LKSEG_RESOURCES"):
        candidates.append(Path(os.environ["LKSEG_RESOURCES"]))
    package = Path(__file__).resolve().parents[1]  # .../lkseg
    candidates += [package.parents[1] / "Resources", package.parent / "Resources"]
    for c in candidates:
        if (c / DEFAULT_MODEL).is_file() or (c / SAMPLE_CT).is_file():
            return c
    return None


def bundled(relative: Path) -> Path | None:
    root = resources_dir()
    path = root / relative if root else None
    return path if path is not None and path.is_file() else None


def sample_ct() -> Path | None:
    """The bundled sample CT, or None when this installation has none."""
    return bundled(SAMPLE_CT)


def default_model() -> Path | None:
    """The bundled default checkpoint, or None when this installation has none."""
    return bundled(DEFAULT_MODEL)
