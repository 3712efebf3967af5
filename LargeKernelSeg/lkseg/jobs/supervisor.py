"""The supervisor, ``python -m lkseg.jobs run JOBDIR``: runs the training command of a job folder as
its child and records the state transitions in ``status.json``."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lkseg.errors import LkSegError
from lkseg.utils.processes import child_options, identity, tree
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
    """Run the job's command as a child and record its fate in ``status.json``.

    The supervisor and the trainer live and die together: SIGTERM here ends the trainer's tree, and the
    trainer stops by itself when this process disappears (``LKSEG_SUPERVISOR`` names it, see
    :mod:`lkseg.training.supervision`), also when a launcher stands between them.
    """
    folder = Path(job_dir).resolve()
    spec = read_json(folder / "job.json")
    command = spec.get("command")
    if not command:
        raise JobError(f"{folder} has no job.json with a command")
    me = identity()
    update_status(folder, pid=me["pid"], pid_created=me["created"])
    terminated = {"flag": False, "child": None}

    def on_term(signum: int, frame: Any) -> None:
        terminated["flag"] = True
        for p in tree([terminated["child"]]):
            try:
                p.terminate()
            except Exception:  # noqa: BLE001 - already gone
                pass

    signal.signal(signal.SIGTERM, on_term)
    cwd = spec.get("cwd") if spec.get("cwd") and Path(spec["cwd"]).is_dir() else str(folder)
    env = dict(os.environ, LKSEG_JOB_DIR=str(folder), PYTHONUNBUFFERED="1",
               LKSEG_SUPERVISOR=f"{me['pid']}:{me['created']!r}")
    child = subprocess.Popen(command, stdin=subprocess.DEVNULL, cwd=cwd, env=env, **child_options())
    child_ident = identity(child.pid) or {"pid": child.pid, "created": None}
    terminated["child"] = child_ident
    update_status(folder, state="running", child_pid=child.pid, child_created=child_ident["created"],
                  started=now_iso(), error=None)
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
