"""A background job for the panel: runs a function in a thread, the GUI polls it from a timer.

Slicer (and Qt) may only be touched from the main thread, so the worker thread never calls back
into the GUI: it stores its progress, result or error, and the panel's ``qt.QTimer`` reads them with
:meth:`BackgroundTask.poll`.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable

log = logging.getLogger(__name__)

RUNNING, DONE, FAILED, CANCELLED = "running", "done", "failed", "cancelled"


class BackgroundTask:
    """``fn(progress, cancel_event)`` in a daemon thread.

    ``progress(fraction, stage)`` may be called from any thread; ``cancel_event`` is a
    ``threading.Event`` the function checks (lkseg raises ``Cancelled`` when it is set).
    """

    def __init__(self, fn: Callable[[Callable[[float, str], None], threading.Event], Any],
                 name: str = "LargeKernelSeg") -> None:
        self._fn = fn
        self._name = name
        self.cancel_event = threading.Event()
        self._state = (0.0, "")
        self._result: Any = None
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def progress(self, fraction: float, stage: str = "") -> None:
        """The progress callback handed to ``fn`` (one tuple assignment: safe across threads)."""
        self._state = (max(0.0, min(1.0, float(fraction))), str(stage))

    def _run(self) -> None:
        try:
            self._result = self._fn(self.progress, self.cancel_event)
        except BaseException as exc:  # handed over to the main thread by poll()/result()
            self._error = exc

    def start(self) -> "BackgroundTask":
        if self._thread is not None:
            raise RuntimeError("a BackgroundTask runs once")
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def poll(self) -> tuple[str, float, str]:
        """(state, fraction, stage); state is running, done, failed or cancelled."""
        fraction, stage = self._state
        if self.running or self._thread is None:
            return RUNNING, fraction, stage
        if self._error is None:
            return DONE, 1.0, stage
        cancelled = any(c.__name__ == "Cancelled" for c in type(self._error).__mro__)
        return (CANCELLED if cancelled else FAILED), fraction, stage

    def cancel(self) -> None:
        self.cancel_event.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until finished (tests and scripts; the GUI polls instead). True when finished."""
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.running

    def result(self) -> Any:
        """The function's return value; re-raises its exception in the calling (main) thread."""
        if self.running:
            raise RuntimeError("the task is still running")
        if self._error is not None:
            raise self._error
        return self._result
