"""The panel's log area: log records of ``lkseg`` and of the module, from any thread, kept for the
main thread to show (Qt widgets may be touched from the main thread only)."""

from __future__ import annotations

import collections
import logging
import threading
import time

LOGGERS = ("lkseg", "LargeKernelSeg", "LargeKernelSegLib")


class LogBuffer(logging.Handler):
    """A logging handler that keeps the last ``capacity`` lines; :meth:`drain` hands over the new ones."""

    def __init__(self, capacity: int = 500, level: int = logging.INFO) -> None:
        super().__init__(level)
        self._lines: collections.deque[str] = collections.deque(maxlen=capacity)
        self._lock = threading.Lock()
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record).split("\n", 1)[0]  # the first line; tracebacks stay in the main log
        except Exception:  # noqa: BLE001 - a log line must never break the caller
            return
        with self._lock:
            self._lines.append(text)

    def note(self, text: str) -> None:
        """A line of the panel's own (a status message)."""
        with self._lock:
            self._lines.append(f"{time.strftime('%H:%M:%S')} {text}")

    def drain(self) -> list[str]:
        with self._lock:
            lines = list(self._lines)
            self._lines.clear()
        return lines

    def attach(self) -> "LogBuffer":
        for name in LOGGERS:
            logging.getLogger(name).addHandler(self)
        return self

    def detach(self) -> None:
        for name in LOGGERS:
            logging.getLogger(name).removeHandler(self)
