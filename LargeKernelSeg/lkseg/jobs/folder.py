"""A job folder and what front ends read from it: ``status.json`` (written atomically),
``progress.jsonl``, ``log.txt`` and the best checkpoint; a job whose process died without saying so
reads as ``failed``. The layout is fixed in ``docs/architecture.md`` ("Training command line and the
job folder")."""

from __future__ import annotations

import json
import logging
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from lkseg.errors import LkSegError
from lkseg.utils.processes import alive
from lkseg.utils.atomic import atomic_write_json

log = logging.getLogger(__name__)


ACTIVE = ("queued", "running")
#: written by start_job/resume_job only: the process they started (pid and creation time)
LAUNCH_RECORD = "launch.json"


#: seconds a job may stay "queued" without a process before it counts as failed
QUEUED_TIMEOUT_S = 60.0


class JobError(LkSegError):
    """A job folder or job operation problem (the message names the folder)."""


def default_root() -> Path:
    """``$LKSEG_HOME/jobs``, else ``~/.lkseg/jobs``."""
    home = os.environ.get("LKSEG_HOME")
    return (Path(home) if home else Path.home() / ".lkseg") / "jobs"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise JobError(f"{path} cannot be read ({exc}); the job folder is damaged") from None
    return data if isinstance(data, dict) else {}


def update_status(job_dir: Path, **fields: Any) -> dict:
    status = read_json(job_dir / "status.json")
    status.update(fields, updated=now_iso())
    atomic_write_json(job_dir / "status.json", status)
    return status


def log_tail(job_dir: Path, lines: int = 20) -> str:
    try:
        text = (Path(job_dir) / "log.txt").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


# -- polling --------------------------------------------------------------------------------
def read_progress(job_dir: str | os.PathLike) -> dict | None:
    """The last complete JSON line of ``progress.jsonl`` (``None`` before the first one)."""
    try:
        lines = (Path(job_dir) / "progress.jsonl").read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a half-written last line
        if isinstance(row, dict):
            return row
    return None


def job_processes(folder: Path, status: dict) -> list[dict]:
    """Identities (pid + creation time) of every process the job recorded: the launcher ``start_job``
    started (``launch.json``), the supervisor and the trainer (``status.json``)."""
    idents = [read_json(folder / LAUNCH_RECORD) or None,
              {"pid": status.get("pid"), "created": status.get("pid_created")},
              {"pid": status.get("child_pid"), "created": status.get("child_created")}]
    return [i for i in idents if i and i.get("pid")]


def job_status(job_dir: str | os.PathLike) -> dict:
    """``status.json`` plus ``progress`` (last progress row), ``best`` (path or None) and ``job_dir``.

    A job none of whose processes is alive while its state says queued/running is reported (and
    recorded) as ``failed`` with the tail of ``log.txt``.
    """
    folder = Path(job_dir).expanduser().resolve()
    status = read_json(folder / "status.json")
    if not status:
        raise JobError(f"{folder} has no status.json; it is not a job folder (lkseg jobs list shows them)")
    state = status.get("state")
    idents = job_processes(folder, status)
    if state in ACTIVE and not any(alive(i) for i in idents):
        stale = state == "running" or bool(idents) or _age_s(status.get("updated")) > QUEUED_TIMEOUT_S
        if stale:
            fresh = read_json(folder / "status.json")  # the supervisor may just have finished
            if fresh.get("state") in ACTIVE and fresh.get("pid") == status.get("pid"):
                tail = log_tail(folder)
                who = f"pid {status.get('pid')}" if status.get("pid") else "never started"
                status = update_status(folder, state="failed", error=f"the job's processes ({who}) ended without "
                                       f"reporting; last lines of {folder / 'log.txt'}:\n{tail}")
            else:
                status = fresh
    launch = read_json(folder / LAUNCH_RECORD)
    if status.get("state") in ACTIVE and not status.get("pid") and launch.get("pid"):
        status = {**status, "pid": launch["pid"]}  # until the supervisor records itself: the process started
    progress = read_progress(folder)
    best = None
    if progress and progress.get("best"):
        best = str(progress["best"])
    elif (folder / "checkpoints" / "best.safetensors").is_file():
        best = str(folder / "checkpoints" / "best.safetensors")
    return {**status, "job_dir": str(folder), "progress": progress, "best": best}


def _age_s(stamp: Any) -> float:
    try:
        return time.time() - datetime.fromisoformat(str(stamp)).timestamp()
    except ValueError:
        return float("inf")


def list_jobs(root: str | os.PathLike | None = None) -> list[tuple[Path, dict]]:
    """``(folder, status)`` for every job folder directly under ``root`` (default :func:`default_root`)."""
    base = Path(root).expanduser() if root is not None else default_root()
    if not base.is_dir():
        return []
    found = [base] if (base / "job.json").is_file() else []
    found += sorted(p.parent for p in base.glob("*/job.json"))
    jobs = []
    for folder in found:
        try:
            jobs.append((folder, job_status(folder)))
        except JobError as exc:
            jobs.append((folder, {"state": "unknown", "error": str(exc)}))
    return jobs
