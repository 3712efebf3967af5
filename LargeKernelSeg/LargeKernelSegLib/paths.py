"""Names of exported files: safe case ids and one path per export format."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

EXPORT_FORMATS: dict[str, str] = {
    "NIfTI": ".nii.gz",
    "Slicer segmentation (.seg.nrrd)": ".seg.nrrd",
    "DICOM SEG": ".dcm",
}
"""Export formats offered in the panel, with the file suffix each writes."""


def sanitize_case_id(name: str, fallback: str = "case") -> str:
    """A case id usable as a file name on every platform: ASCII letters, digits, ``-``, ``_``, ``.``.

    Accents are dropped, runs of other characters become one ``_``, leading dots are removed
    (no hidden files or ``..``) and the length is capped at 64 characters.
    """
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-")
    text = re.sub(r"\.{2,}", ".", text)[:64].rstrip("._-")
    if text.upper() in {"CON", "PRN", "AUX", "NUL"} or re.fullmatch(r"(?i)(COM|LPT)\d", text):
        text = f"{text}_"
    return text or fallback


def export_path(folder: str | Path, case_id: str, fmt: str, overwrite: bool = False) -> Path:
    """Where to write ``case_id``'s labels in ``fmt`` (a key of :data:`EXPORT_FORMATS`).

    Without ``overwrite``, an existing file is never replaced: ``_2``, ``_3``... is appended.
    """
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    suffix = EXPORT_FORMATS[fmt]
    stem = sanitize_case_id(case_id)
    folder = Path(folder)
    path = folder / f"{stem}{suffix}"
    n = 2
    while not overwrite and path.exists():
        path = folder / f"{stem}_{n}{suffix}"
        n += 1
    return path
