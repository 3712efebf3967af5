"""In CI (LKSEG_STRICT_SKIPS=1) only CUDA tests may skip: a skip for anything else fails the run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _run(tmp_path: Path, reason: str, strict: bool) -> subprocess.CompletedProcess:
    shutil.copy(HERE / "conftest.py", tmp_path / "conftest.py")
    shutil.copy(HERE / "repo_data.py", tmp_path / "repo_data.py")
    (tmp_path / "test_one.py").write_text(f"import pytest\n\ndef test_x():\n    pytest.skip({reason!r})\n")
    env = {**os.environ, "LKSEG_STRICT_SKIPS": "1" if strict else "0"}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xvfb",
                           str(tmp_path)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_a_missing_package_skip_fails_in_ci(tmp_path):
    proc = _run(tmp_path, "could not import 'nrrd'", strict=True)
    assert proc.returncode == 1, proc.stdout
    assert "not allowed in CI: skipped" in proc.stdout


def test_a_cuda_skip_passes_in_ci_and_any_skip_outside_it(tmp_path):
    assert _run(tmp_path, "needs CUDA", strict=True).returncode == 0
    assert _run(tmp_path, "could not import 'nrrd'", strict=False).returncode == 0
