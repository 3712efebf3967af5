"""Liveness and ending of a job's processes: the supervisors started here, pids, process groups."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from pathlib import Path

log = logging.getLogger(__name__)


CHILDREN: dict[int, subprocess.Popen] = {}  # supervisors started here (reaped when polled)


def pid_alive(pid: int | None) -> bool:
    """True when ``pid`` runs (a zombie counts as gone)."""
    if not pid:
        return False
    child = CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        CHILDREN.pop(pid, None)
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # Linux: a zombie still answers kill(0)
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def kill_group(pgid: int, grace_s: float) -> None:
    def group_alive() -> bool:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return pid_alive(pgid) or _group_has_live_members(pgid)

    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            pid_alive(pgid)  # reaps our own child
            if not group_alive():
                return
            time.sleep(0.05)
    log.warning("process group %d survived SIGKILL", pgid)


def _group_has_live_members(pgid: int) -> bool:
    """Linux: any non-zombie process in group ``pgid`` (elsewhere assume yes while killpg succeeds)."""
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False
