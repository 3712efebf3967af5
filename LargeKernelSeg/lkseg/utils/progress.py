"""Progress where the output goes, fed by the library's ``progress(fraction, stage)`` callbacks: a bar
on a terminal, and otherwise (piped, logged, a CI job) a log line with stage, fraction and ETA every
``every_s`` seconds and at each new stage."""

from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger("lkseg.progress")


class TerminalProgress:
    """Context manager turning ``progress(fraction, stage)`` calls into a tqdm bar on stderr when it is a
    terminal (or ``force``), else into periodic lines on stderr."""

    def __init__(self, desc: str = "", force: bool = False, every_s: float = 10.0, stream=None) -> None:
        self.desc = desc
        self._bar = None
        self._force = force
        self.every_s = every_s
        self.stream = stream or sys.stderr
        self._t0 = self._last = 0.0
        self._stage = None

    def __enter__(self) -> "TerminalProgress":
        self._t0 = time.monotonic()
        if not (self._force or self.stream.isatty()):
            return self
        try:
            from tqdm import tqdm
        except ImportError:  # pragma: no cover - tqdm is a dependency
            return self
        self._bar = tqdm(total=100, desc=self.desc, file=self.stream, leave=True,
                         bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}")
        return self

    def update(self, fraction: float, stage: str = "") -> None:
        fraction = max(0.0, min(1.0, fraction))
        if self._bar is None:
            self._line(fraction, stage)
            return
        target = int(round(fraction * 100))
        if target > self._bar.n:
            self._bar.update(target - self._bar.n)
        if stage:
            self._bar.set_postfix_str(stage, refresh=True)

    def _line(self, fraction: float, stage: str) -> None:
        now = time.monotonic()
        if stage == self._stage and now - self._last < self.every_s and fraction < 1.0:
            return
        self._stage, self._last = stage, now
        elapsed = now - self._t0
        eta = f", about {elapsed * (1 - fraction) / fraction:.0f} s left" if 0.02 < fraction < 1.0 else ""
        print(f"{self.desc}: {stage or 'working'} {100 * fraction:3.0f}% ({elapsed:.0f} s{eta})", file=self.stream,
              flush=True)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()
