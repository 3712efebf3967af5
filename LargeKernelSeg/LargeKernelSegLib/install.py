"""Installing the module's Python dependencies inside Slicer: torch through the PyTorch extension
(PyTorch Utils), the rest with ``slicer.util.pip_install``, after asking the user.

Calls Slicer (``slicer.util``, ``PyTorchUtils``); imported only by ``LargeKernelSeg.py``. What to
install is decided Slicer-free in :mod:`LargeKernelSegLib.dependencies`.
"""

import slicer

from .dependencies import install_prompt, missing_modules, pip_requirements


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
        slicer.util.pip_install(requirements)
    import importlib
    importlib.invalidate_caches()
    return not missing_modules()
