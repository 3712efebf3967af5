"""Where the bundled models and their sample images live, and what each is for.

They ship in the repository's top-level ``Resources/`` folder (and, inside 3D Slicer, next to
the installed module). ``LKSEG_RESOURCES`` overrides the location. The CT model is the default;
every front end lists the bundled models by title and modality (:data:`BUNDLED`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from lkseg.errors import LkSegError

SAMPLE_CT = Path("Data") / "sample_ct.nii.gz"
DEFAULT_MODEL = Path("Models") / "default_model.safetensors"


@dataclass(frozen=True)
class BundledModel:
    """One bundled checkpoint and the sample image it is demonstrated on (paths under Resources/)."""

    key: str        #: what ``lkseg demo --model`` takes
    title: str      #: what the front ends show
    modality: str   #: as its card says (the test suite checks they agree)
    model: Path
    sample: Path

    @property
    def label(self) -> str:
        """``"<title> (<modality>)"``, for model lists."""
        return f"{self.title} ({self.modality})"


BUNDLED = (
    BundledModel("ct", "Abdominal CT demo, 5 organs", "CT", DEFAULT_MODEL, SAMPLE_CT),
    BundledModel("mr", "Abdominal T2 MR, 4 organs", "MR T2-weighted (T2-SPIR)", Path("Models") / "mr_t2_model.safetensors",
                 Path("Data") / "sample_mr_t2.nii.gz"),
)


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


def bundled_models() -> list[tuple[BundledModel, Path]]:
    """The bundled models this installation has, with their checkpoint paths (the default first)."""
    found = []
    for entry in BUNDLED:
        path = bundled(entry.model)
        if path is not None:
            found.append((entry, path))
    return found


def bundled_model(key: str) -> BundledModel:
    """The bundled model called ``key`` (``ct``, ``mr``); a clear error for another name."""
    for entry in BUNDLED:
        if entry.key == key:
            return entry
    raise LkSegError(f"no bundled model {key!r}; the bundled models are "
                     + ", ".join(f"{e.key} ({e.label})" for e in BUNDLED))


def bundled_entry(path: str | os.PathLike) -> BundledModel | None:
    """The bundled model whose checkpoint is ``path``, or None for any other file."""
    target = Path(path).resolve()
    for entry, found in bundled_models():
        if found.resolve() == target:
            return entry
    return None
