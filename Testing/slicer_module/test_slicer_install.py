"""Dependency installation never replaces the torch PyTorch Utils installed: the constraints and pip
arguments the module builds, run through pip's real resolver (``--dry-run``, offline, on local wheels
where the newest MONAI wants a newer torch than the installed one)."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

MODULE_DIR = Path(__file__).resolve().parents[2] / "LargeKernelSeg"
sys.path.insert(0, str(MODULE_DIR))

from LargeKernelSegLib import dependencies  # noqa: E402


def _wheel(folder: Path, name: str, version: str, requires: list[str] = ()) -> None:
    """A minimal valid wheel (metadata only), for pip's resolver."""
    info = f"{name}-{version}.dist-info"
    meta = "".join([f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
                    *(f"Requires-Dist: {r}\n" for r in requires)])
    files = {f"{info}/METADATA": meta, f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    files[f"{info}/RECORD"] = "".join(f"{p},,\n" for p in files) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(folder / f"{name}-{version}-py3-none-any.whl", "w") as z:
        for path, text in files.items():
            z.writestr(path, text)


def _resolve(tmp_path: Path, args: list[str]) -> dict[str, str]:
    """What ``pip install <args>`` would install here (offline, nothing installed): name -> version."""
    report = tmp_path / "report.json"
    run = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--no-index",
                          "--find-links", str(tmp_path / "wheels"), "--report", str(report), "--quiet", *args],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    data = json.loads(report.read_text())
    return {i["metadata"]["name"]: i["metadata"]["version"] for i in data["install"]}


def test_installed_torch_is_pinned_and_pip_picks_a_monai_that_accepts_it(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _wheel(wheels, "torch", "2.4.0+cu121")
    _wheel(wheels, "torch", "2.9.0")
    _wheel(wheels, "numpy", "1.26.4")
    _wheel(wheels, "numpy", "2.3.0")
    _wheel(wheels, "monai", "1.4.0", ["torch>=1.9", "numpy>=1.24"])
    _wheel(wheels, "monai", "1.6.0", ["torch>=2.8", "numpy>=2"])
    # without constraints (what `pip install monai>=1.4` did): the CUDA torch would be replaced
    assert _resolve(tmp_path, ["monai>=1.4"]) == {"monai": "1.6.0", "torch": "2.9.0", "numpy": "2.3.0"}
    constraints = tmp_path / "constraints.txt"
    constraints.write_text(dependencies.constraints_text({"torch": "2.4.0+cu121", "numpy": "1.26.4"}))
    args = dependencies.pip_install_args(["monai>=1.4"], constraints)
    assert args == ["-c", str(constraints), "monai>=1.4"]
    assert _resolve(tmp_path, args) == {"monai": "1.4.0", "torch": "2.4.0+cu121", "numpy": "1.26.4"}


def test_constraints_pin_what_is_installed_here():
    installed = dependencies.installed_versions()
    assert "torch" in installed and "numpy" in installed
    text = dependencies.constraints_text(installed)
    assert f"torch=={installed['torch']}\n" in text and text.count("\n") == len(installed)
    assert dependencies.installed_versions(["no-such-distribution-here"]) == {}
    assert dependencies.pip_install_args(["a"], None) == ["a"]


def test_restart_is_asked_for_only_when_an_imported_package_changed():
    before, after = {"torch": "2.4.0", "numpy": "1.26.4"}, {"torch": "2.4.0", "numpy": "2.0.0"}
    assert dependencies.changed_imports(before, after, {"numpy", "torch"}) == ["numpy"]
    assert dependencies.changed_imports(before, after, {"torch"}) == []
    assert dependencies.changed_imports(before, dict(before), {"numpy", "torch"}) == []
