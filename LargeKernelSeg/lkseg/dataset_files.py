"""File helpers of the local dataset: NIfTI conversion, atomic writes, history copies, the lock."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import SimpleITK as sitk

from lkseg.errors import LkSegError
from lkseg.image import Image

FILE_ENDING = ".nii.gz"


class DatasetError(LkSegError):
    """A problem with a local dataset folder or with a case being added to it."""


def _file_mode() -> int:
    """The mode a plainly created file would get (mkstemp makes 0600 files)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def image_to_sitk(image: Image) -> sitk.Image:
    out = sitk.GetImageFromArray(np.ascontiguousarray(image.array))
    out.SetSpacing(tuple(image.spacing))
    out.SetOrigin(tuple(image.origin))
    out.SetDirection(tuple(float(x) for x in np.asarray(image.direction).reshape(-1)))
    return out


def sitk_to_image(img: sitk.Image) -> Image:
    return Image(sitk.GetArrayFromImage(img), img.GetSpacing(), img.GetOrigin(),
                 np.asarray(img.GetDirection()).reshape(3, 3))


def read_nifti(path: Path) -> Image:
    try:
        return sitk_to_image(sitk.ReadImage(str(path)))
    except RuntimeError as exc:
        raise DatasetError(f"cannot read {path}: {str(exc).strip().splitlines()[-1]}") from None


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _atomic_write_image(image: Image, path: Path) -> None:
    """Write a NIfTI file to a temporary name in the same folder, fsync it, rename it into place."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=FILE_ENDING, dir=path.parent)
    os.fchmod(fd, _file_mode())
    os.close(fd)
    try:
        sitk.WriteImage(image_to_sitk(image), tmp, True)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _atomic_write_json(data: Any, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, _file_mode())
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


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
    _fsync_dir(hist_dir)
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
