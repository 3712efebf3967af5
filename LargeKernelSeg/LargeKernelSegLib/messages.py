"""Plain-language messages for the panel's status line; the technical details go to the log.

Exceptions are recognised by class name along their MRO, so this module needs none of the
heavier ``lkseg`` modules (which import torch) to be importable.
"""

from __future__ import annotations

_BY_CLASS: dict[str, str] = {
    "Cancelled": "Stopped: the operation was cancelled.",
    "CheckpointError": "The model file cannot be used. {detail} Choose another model file or the bundled default.",
    "ImageReadError": "The image could not be read. {detail}",
    "WorkerError": "The segmentation engine stopped unexpectedly. {detail} Try again; if it keeps failing, choose CPU as the device.",
    "DatasetError": "The dataset folder cannot be used. {detail}",
    "JobError": "The fine-tuning job could not be run. {detail}",
    "TrainingError": "Fine-tuning failed. {detail}",
    "LkSegError": "{detail}",
}


def _detail(exc: BaseException) -> str:
    text = str(exc).strip()
    if text and not text.endswith((".", "!", "?")):
        text += "."
    return text[:1].upper() + text[1:] if text else ""


def is_cancelled(exc: BaseException) -> bool:
    """True for ``lkseg.errors.Cancelled`` (recognised by name: no lkseg import needed)."""
    return any(cls.__name__ == "Cancelled" for cls in type(exc).__mro__)


def user_message(exc: BaseException) -> str:
    """A sentence a clinician understands, saying what happened and what to do next."""
    if isinstance(exc, MemoryError) or "out of memory" in str(exc).lower():
        return ("The computer ran out of memory while segmenting. Close other programs, or choose CPU "
                "as the device if the graphics card is too small.")
    for cls in type(exc).__mro__:
        template = _BY_CLASS.get(cls.__name__)
        if template is not None:
            return " ".join(template.format(detail=_detail(exc)).split()) or "The operation failed."
    if isinstance(exc, ModuleNotFoundError):
        return (f"A required component ({exc.name or 'a Python package'}) is not installed. "
                "Press Segment again to install it.")
    if isinstance(exc, FileNotFoundError):
        name = exc.filename or str(exc)
        return f"A file was not found: {name}. Check that it still exists."
    if isinstance(exc, PermissionError):
        return f"Permission denied writing or reading {exc.filename or 'a file'}. Choose another folder."
    return "Something went wrong. The details are in the application log (Python console)."
