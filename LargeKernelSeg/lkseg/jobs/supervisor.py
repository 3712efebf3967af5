"""The supervisor, ``python -m lkseg.jobs run JOBDIR``: runs the training command of a job folder as
its child and records the state transitions in ``status.json``."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lkseg.errors import LkSegError
from lkseg.jobs.folder import (
    JobError,
    log_tail,
    now_iso,
    read_json,
    read_progress,
    update_status,
)

log = logging.getLogger(__name__)


# -- the supervisor ---------------------------------------------------------------------------
def supervise(job_dir: str | os.PathLike) -> int:
    """Run the job's command as a child and record its fate in ``status.json``."""
    folder = Path(job_dir).resolve()
    spec = read_json(folder / "job.json")
    command = spec.get("command")
    if not command:
        raise JobError(f"{folder} has no job.json with a command")
    terminated = {"flag": False}

    def on_term(signum: int, frame: Any) -> None:
        terminated["flag"] = True

    signal.signal(signal.SIGTERM, on_term)
    deadline = time.monotonic() + 2.0  # let start_job record our pid first (no lost update)
    while read_json(folder / "status.json").get("pid") != os.getpid() and time.monotonic() < deadline:
        time.sleep(0.02)
    cwd = spec.get("cwd") if spec.get("cwd") and Path(spec["cwd"]).is_dir() else str(folder)
    env = dict(os.environ, LKSEG_JOB_DIR=str(folder), PYTHONUNBUFFERED="1")
    child = subprocess.Popen(command, stdin=subprocess.DEVNULL, cwd=cwd, env=env)
    update_status(folder, state="running", pid=os.getpid(), child_pid=child.pid, started=now_iso(), error=None)
    code = child.wait()
    if terminated["flag"] or read_json(folder / "status.json").get("cancel_requested"):
        update_status(folder, state="cancelled", returncode=code)
        return 130
    if code == 0:
        progress = read_progress(folder) or {}
        update_status(folder, state="done", returncode=0, best=progress.get("best"))
        return 0
    sys.stdout.flush()
    update_status(folder, state="failed", returncode=code,
                   error=f"exit code {code}; last lines of {folder / 'log.txt'}:\n{log_tail(folder)}")
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0] != "run":
        print("usage: python -m lkseg.jobs run JOBDIR  (use `lkseg jobs` to manage jobs)", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    try:
        return supervise(args[1])
    except LkSegError as exc:
        print(f"lkseg.jobs: error: {exc}", file=sys.stderr)
        return 2
