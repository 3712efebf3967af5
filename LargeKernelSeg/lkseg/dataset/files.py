"""File helpers of the local dataset: NIfTI conversion, atomic writes, history copies, the lock."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import numpy as np
import SimpleITK as sitk

from lkseg.errors import LkSegError
from lkseg.io.image import Image
from lkseg.io.imageio import read_image
from lkseg.utils.atomic import fsync_dir

FILE_ENDING = ".nii.gz"


class DatasetError(LkSegError):
    """A problem with a local dataset folder or with a case being added to it."""


def read_nifti(path: Path) -> Image:
    """Read a case file; unreadable files are a :class:`DatasetError` naming the file."""
    try:
        return read_image(path)
    except LkSegError as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from None


def _keep_in_history(path: Path, history_name: str) -> Path:
    """Hard-link (or copy) ``path`` into ``path.parent/history`` under a unique name."""
    hist_dir = path.parent / "history"
    hist_dir.mkdir(exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    target = hist_dir / f"{history_name}.{stamp}{FILE_ENDING}"
    n = 1
    while target.exists():
        target = hist_dir / f"{history_name}.{stamp}-{n}{FILE_ENDING}"
        n += 1
    try:
        os.link(path, target)  # the current file stays in place until the new one replaces it
    except OSError:
        shutil.copy2(path, target)
    fsync_dir(hist_dir)
    return target


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """Exclusive inter-process lock on ``root/.lock`` (blocks until it is free)."""
    with open(root / ".lock", "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def read_header(path: Path) -> tuple[tuple, tuple, tuple, tuple]:
    r = sitk.ImageFileReader()
    r.SetFileName(str(path))
    r.ReadImageInformation()
    return r.GetSize(), r.GetSpacing(), r.GetOrigin(), r.GetDirection()


def _same_geometry(a: tuple, b: tuple, atol: float = 1e-4) -> bool:
    return a[0] == b[0] and all(np.allclose(x, y, atol=atol) for x, y in zip(a[1:], b[1:]))
