"""Atomic file writes.

Every file a user relies on (checkpoints, label maps, dataset cases and ``dataset.json``, job
status, settings) is written to a temporary name in the same folder, fsynced and renamed over
its target, so a crash or a kill leaves either the old file or the new one, never half of one.
The new file gets the permissions a plain ``open()`` would give it (or keeps those of the file
it replaces), not the 0600 that ``mkstemp`` creates.
"""

from __future__ import annotations

import glob
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["atomic_path", "remove_stale_temporaries", "atomic_write_bytes", "atomic_write_text", "atomic_write_json", "full_suffix", "fsync_dir"]

#: multi-part suffixes that writers choosing a format by file name must see whole
_COMPOUND_SUFFIXES = (".seg.nrrd", ".nii.gz")


def full_suffix(path: Path) -> str:
    """The format suffix of ``path``: ``.nii.gz`` and ``.seg.nrrd`` whole, else the last one."""
    name = path.name.lower()
    for s in _COMPOUND_SUFFIXES:
        if name.endswith(s):
            return s
    return path.suffix.lower()


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def fsync_dir(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (silently skipped where the platform cannot)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Remove temporary files beside ``path`` left by writers that were killed mid-write (their pid,
    part of the name, no longer runs): a kill leaves no visible damage, and this removes the rest."""
    import psutil

    removed = []
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*{glob.escape(full_suffix(path))}"):
        pid = tmp.name[len(path.name) + 2:].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not psutil.pid_exists(int(pid)):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same format suffix) to write to; when the block
    ends without an error, fsync it and rename it over ``path``. On error the temporary file is
    removed and ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=full_suffix(path), dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        # after the write: some writers replace the file rather than write into it
        os.chmod(tmp, (path.stat().st_mode & 0o777) if path.exists() else (0o666 & ~_umask()))
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, data: Any) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2) + "\n")
