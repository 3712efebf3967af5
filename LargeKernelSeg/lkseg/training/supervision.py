"""A trainer started by a job supervisor stops when its supervisor is gone.

The supervisor (:mod:`lkseg.jobs.supervisor`) names itself in ``LKSEG_SUPERVISOR`` as
``pid:creation-time``. A daemon thread polls that process (psutil, so it also works on Windows and
when a launcher stands between the two) and, once it has disappeared, asks the run to stop: the run
saves its resume state at the next step and exits, so a killed supervisor never leaves an orphan
trainer writing into the job folder.
"""

from __future__ import annotations

import logging
import os
import threading

import psutil

log = logging.getLogger(__name__)

ENV = "LKSEG_SUPERVISOR"
POLL_S = 0.5


class SupervisorWatch:
    """``is_set()`` turns true when the supervisor process has ended (the ``cancel`` of :func:`train`)."""

    def __init__(self, pid: int, created: float, poll_s: float = POLL_S) -> None:
        self.pid, self.created = pid, created
        self._gone = threading.Event()
        self._thread = threading.Thread(target=self._watch, args=(poll_s,), name="lkseg-supervisor-watch",
                                        daemon=True)
        self._thread.start()

    def _alive(self) -> bool:
        try:
            p = psutil.Process(self.pid)
            return abs(p.create_time() - self.created) < 0.05 and p.status() != psutil.STATUS_ZOMBIE
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return False

    def _watch(self, poll_s: float) -> None:
        while not self._gone.wait(poll_s):
            if not self._alive():
                log.warning("the job's supervisor (pid %d) is gone; stopping after saving the resume state", self.pid)
                self._gone.set()

    def is_set(self) -> bool:
        return self._gone.is_set()


def watch_from_env() -> SupervisorWatch | None:
    """A watch on the supervisor named in ``LKSEG_SUPERVISOR``, or None when not run by a job."""
    value = os.environ.get(ENV, "")
    pid, _, created = value.partition(":")
    try:
        return SupervisorWatch(int(pid), float(created))
    except ValueError:
        return None
