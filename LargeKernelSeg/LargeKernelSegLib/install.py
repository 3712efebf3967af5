"""Installing the module's Python dependencies inside Slicer: torch through the PyTorch extension
(PyTorch Utils), the rest with ``slicer.util.pip_install`` held to a constraints file that pins the
installed torch (and numpy), after asking the user; a restart is offered when an imported package changed.

Calls Slicer (``slicer.util``, ``PyTorchUtils``); imported only by ``LargeKernelSeg.py``. What to
install, and with which constraints, is decided Slicer-free in :mod:`LargeKernelSegLib.dependencies`.
"""

import os
import sys
import tempfile

import slicer

from .dependencies import (PROTECTED, constraints_text, changed_imports, install_prompt, installed_versions,
                           missing_modules, pip_install_args, pip_requirements)


def ensure_dependencies(ask=True):
    """Install missing packages after asking (torch through the PyTorch extension); True if all present."""
    missing = missing_modules()
    if not missing:
        return True
    if ask and not slicer.util.confirmOkCancelDisplay(install_prompt(missing)):
        return False
    if "torch" in missing:
        try:
            import PyTorchUtils
        except ModuleNotFoundError:
            from lkseg.errors import LkSegError
            raise LkSegError("PyTorch is missing: install the 'PyTorch' extension from the Extensions Manager, "
                             "restart Slicer and try again.") from None
        if PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False, torchVersionRequirement=">=2.1") is None:
            return False
    requirements = pip_requirements(missing)
    if requirements:
        before = installed_versions(PROTECTED)
        with tempfile.TemporaryDirectory(prefix="lkseg-pip-") as folder:
            constraints = os.path.join(folder, "constraints.txt")
            with open(constraints, "w", encoding="utf-8") as f:
                f.write(constraints_text(before))
            slicer.util.pip_install(pip_install_args(requirements, constraints))
        changed = changed_imports(before, installed_versions(PROTECTED), set(sys.modules))
        if changed and slicer.util.confirmOkCancelDisplay(
                f"{', '.join(changed)} changed while in use. Restart Slicer now to use the new version?"):
            slicer.util.restart()
    import importlib
    importlib.invalidate_caches()
    return not missing_modules()
