"""Never overwrite what the user made: outputs are checked against the inputs, the references and
the files already there before any work starts."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from lkseg.errors import LkSegError


def _same(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.expanduser().resolve() == b.expanduser().resolve()


def check_outputs(outputs: Iterable[str | os.PathLike], protected: Iterable[str | os.PathLike] = (),
                  overwrite: bool = False) -> None:
    """Raise :class:`LkSegError` when an output is one of ``protected`` (the inputs, references or a
    checkpoint in use: refused even with ``overwrite``), is an existing folder, or is an existing file
    and ``overwrite`` is false. Two outputs that are the same file are refused too."""
    outputs = [Path(p) for p in outputs]
    protected = [Path(p) for p in protected]
    for out in outputs:
        for src in protected:
            if _same(out, src):
                raise LkSegError(f"the output {out} is also an input ({src}); it would be destroyed. "
                                 "Choose another output path")
        if out.is_dir():
            raise LkSegError(f"the output {out} is an existing folder; give a file name")
        if out.exists() and not overwrite:
            raise LkSegError(f"{out} already exists; nothing was written. Choose another output, or add "
                             "--overwrite to replace it")
    for i, a in enumerate(outputs):
        for b in outputs[i + 1:]:
            if _same(a, b):
                raise LkSegError(f"two outputs would both be written to {a}; give distinct output names")
