"""A terminal progress bar fed by the library's ``progress(fraction, stage)`` callbacks."""

from __future__ import annotations

import sys


class TerminalProgress:
    """Context manager turning ``progress(fraction, stage)`` calls into a tqdm bar on stderr.

    Falls back to silence when tqdm is not installed or stderr is not a terminal and
    ``force`` is false.
    """

    def __init__(self, desc: str = "", force: bool = False) -> None:
        self.desc = desc
        self._bar = None
        self._force = force

    def __enter__(self) -> "TerminalProgress":
        try:
            from tqdm import tqdm
        except ImportError:  # pragma: no cover - tqdm comes with monai's usual installs
            return self
        self._bar = tqdm(total=100, desc=self.desc, file=sys.stderr, leave=True,
                         disable=not (self._force or sys.stderr.isatty()),
                         bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}")
        return self

    def update(self, fraction: float, stage: str = "") -> None:
        if self._bar is None:
            return
        target = int(round(max(0.0, min(1.0, fraction)) * 100))
        if target > self._bar.n:
            self._bar.update(target - self._bar.n)
        if stage:
            self._bar.set_postfix_str(stage, refresh=True)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()
