"""Atomic writes: a failed write leaves the old file whole and no temporary file behind."""

import json
import os

import pytest
from lkseg.utils.atomic import atomic_path, atomic_write_json, full_suffix


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "dataset.json"
    atomic_write_json(target, {"numTraining": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text('{"numTraining": 2, "trunc')
            raise RuntimeError("killed mid-write")
    assert json.loads(target.read_text()) == {"numTraining": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["dataset.json"]


def test_replacing_keeps_the_files_permissions(tmp_path):
    target = tmp_path / "settings.json"
    atomic_write_json(target, {"a": 1})
    os.chmod(target, 0o640)
    atomic_write_json(target, {"a": 2})
    assert target.stat().st_mode & 0o777 == 0o640
    assert json.loads(target.read_text()) == {"a": 2}


def test_new_files_are_not_private_to_the_writer(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_write_json(tmp_path / "new.json", [])
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_temporary_keeps_the_format_suffix(tmp_path):
    assert full_suffix(tmp_path / "case.nii.gz") == ".nii.gz"
    assert full_suffix(tmp_path / "labels.SEG.NRRD") == ".seg.nrrd"
    with atomic_path(tmp_path / "labels.seg.nrrd") as tmp:
        assert tmp.name.endswith(".seg.nrrd") and tmp.parent == tmp_path
        tmp.write_bytes(b"x")


def test_temporaries_of_killed_writers_are_removed_by_the_next_write(tmp_path):
    import subprocess
    import sys

    from lkseg.utils.atomic import atomic_write_bytes

    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)
    target = tmp_path / "labels.nii.gz"
    stale = tmp_path / f".labels.nii.gz.{dead}.k2j3.nii.gz"
    stale.write_bytes(b"")  # what a writer killed mid-write leaves behind
    live = tmp_path / f".labels.nii.gz.{os.getpid()}.x1.nii.gz"  # a write in progress in this process
    live.write_bytes(b"")
    other = tmp_path / ".notes.txt.123.tmp"
    other.write_bytes(b"")
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new" and not stale.exists() and live.exists() and other.exists()
