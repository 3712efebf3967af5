"""Background fine-tuning jobs: plain functions every front end polls.

:func:`start_job` creates a job folder and launches a small supervisor,
``python -m lkseg.jobs run JOBDIR``, in a new session (its own process group, stdin from
``/dev/null``, stdout and stderr to ``log.txt``) so the job outlives the GUI that started it.
The supervisor runs ``python -m lkseg.training ... --out JOBDIR`` as its child (in the starter's working folder,
with ``LKSEG_JOB_DIR`` set) and records the
state transitions in ``status.json`` (written atomically): ``queued`` -> ``running`` ->
``done`` / ``failed`` (with the tail of the log) / ``cancelled``. :func:`cancel_job` kills the
whole process group (SIGTERM, then SIGKILL after a grace period); :func:`resume_job` relaunches
from ``job.json`` (training resumes from ``checkpoints/resume.pt`` by itself);
:func:`job_status` reports a job whose process died without saying so as ``failed``.
The folder layout is fixed in ``docs/architecture.md`` ("Training command line and the job folder").
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from lkseg.atomic import atomic_write_json
from lkseg.errors import LkSegError

log = logging.getLogger(__name__)

ACTIVE = ("queued", "running")
#: seconds a job may stay "queued" without a process before it counts as failed
QUEUED_TIMEOUT_S = 60.0
_CHILDREN: dict[int, subprocess.Popen] = {}  # supervisors started here (reaped when polled)


class JobError(LkSegError):
    """A job folder or job operation problem (the message names the folder)."""


def default_root() -> Path:
    """``$LKSEG_HOME/jobs``, else ``~/.lkseg/jobs``."""
    home = os.environ.get("LKSEG_HOME")
    return (Path(home) if home else Path.home() / ".lkseg") / "jobs"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise JobError(f"{path} cannot be read ({exc}); the job folder is damaged") from None
    return data if isinstance(data, dict) else {}


def _update_status(job_dir: Path, **fields: Any) -> dict:
    status = _read_json(job_dir / "status.json")
    status.update(fields, updated=now_iso())
    atomic_write_json(job_dir / "status.json", status)
    return status


def log_tail(job_dir: Path, lines: int = 20) -> str:
    try:
        text = (Path(job_dir) / "log.txt").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def pid_alive(pid: int | None) -> bool:
    """True when ``pid`` runs (a zombie counts as gone)."""
    if not pid:
        return False
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        _CHILDREN.pop(pid, None)
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


# -- starting -------------------------------------------------------------------------------
def training_argv(job_dir: Path, *, dataset: str | os.PathLike, checkpoint: str | os.PathLike | None = None,
                  architecture: str | None = None, labels: str | None = None, steps: int | None = None,
                  minutes: float | None = None, device: str = "auto", extra_args: Sequence[str] = ()) -> list[str]:
    """The ``python -m lkseg.training`` arguments for these options."""
    if (checkpoint is None) == (architecture is None):
        raise JobError("give either a checkpoint to fine-tune or an architecture to train from scratch")
    argv = ["--dataset", str(Path(dataset).resolve()), "--out", str(job_dir)]
    argv += ["--checkpoint", str(Path(checkpoint).resolve())] if checkpoint else ["--architecture", str(architecture)]
    if labels:
        argv += ["--labels", str(labels)]
    if steps:
        argv += ["--steps", str(int(steps))]
    elif minutes:
        argv += ["--minutes", f"{float(minutes):g}"]
    return argv + ["--device", device, *map(str, extra_args)]


def _out_of(argv: Sequence[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg == "--out" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--out="):
            return arg.split("=", 1)[1]
    return None


def _with_out(argv: list[str], folder: Path) -> list[str]:
    """``argv`` with ``--out`` set to the absolute job folder (added when missing)."""
    result, skip = [], False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
        elif arg == "--out":
            skip = True
        elif not arg.startswith("--out="):
            result.append(arg)
    return result + ["--out", str(folder)]


def start_job(job_dir: str | os.PathLike | Sequence[str] | None = None, *, out: str | os.PathLike | None = None,
              dataset: str | os.PathLike | None = None, checkpoint: str | os.PathLike | None = None,
              architecture: str | None = None, labels: str | None = None, steps: int | None = None,
              minutes: float | None = None, device: str = "auto", extra_args: Sequence[str] = (),
              command: Sequence[str] | None = None, python: str = sys.executable) -> Path:
    """Create the job folder and launch the training detached; returns the folder.

    Either ``start_job(job_dir, dataset=..., checkpoint=... | architecture=..., ...)`` or
    ``start_job(training_argv_list, out=job_dir)`` (the arguments of ``python -m lkseg.training``;
    ``--out`` is added when missing). ``command`` replaces the whole child command line (tests,
    torchrun). An existing folder is refused unless empty or a finished job of ours.
    """
    if job_dir is not None and not isinstance(job_dir, (str, os.PathLike)):
        argv = [str(a) for a in job_dir]
        folder = out if out is not None else _out_of(argv)
        if folder is None:
            raise JobError("start_job: the training arguments have no --out and no out= was given")
        folder = Path(folder).expanduser().resolve()
        argv = _with_out(argv, folder)
    else:
        folder = Path(job_dir if job_dir is not None else out or "").expanduser().resolve()
        if job_dir is None and out is None:
            raise JobError("start_job needs a job folder")
        if dataset is None and command is None:
            raise JobError("start_job needs dataset= (the local dataset folder to train on)")
        argv = training_argv(folder, dataset=dataset or "", checkpoint=checkpoint, architecture=architecture,
                             labels=labels, steps=steps, minutes=minutes, device=device,
                             extra_args=extra_args) if dataset is not None else []
    _claim_folder(folder)
    full = list(command) if command is not None else [python, "-m", "lkseg.training", *argv]
    atomic_write_json(folder / "job.json", {"argv": argv, "command": full, "python": python, "cwd": os.getcwd(),
                                            "created": now_iso()})
    atomic_write_json(folder / "status.json", {"state": "queued", "pid": None, "started": None,
                                               "updated": now_iso(), "command": full, "error": None})
    return _launch(folder, python)


def _claim_folder(folder: Path) -> None:
    if folder.exists() and not folder.is_dir():
        raise JobError(f"job folder {folder} is a file; choose a folder path")
    if folder.is_dir() and any(folder.iterdir()):
        if not (folder / "job.json").is_file():
            raise JobError(f"{folder} is not empty and is not a job folder; choose a new or empty folder")
        state = job_status(folder).get("state")
        if state in ACTIVE:
            raise JobError(f"job {folder} is still {state}; cancel it first (lkseg jobs cancel {folder})")
    folder.mkdir(parents=True, exist_ok=True)


def _launch(folder: Path, python: str) -> Path:
    with open(folder / "log.txt", "ab") as logfile:
        proc = subprocess.Popen([python, "-m", "lkseg.jobs", "run", str(folder)], stdin=subprocess.DEVNULL,
                                stdout=logfile, stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
                                cwd=str(folder))
    _CHILDREN[proc.pid] = proc
    _update_status(folder, pid=proc.pid)  # the supervisor waits for this before it writes "running"
    log.info("started job %s (supervisor pid %d)", folder, proc.pid)
    return folder


def resume_job(job_dir: str | os.PathLike) -> Path:
    """Relaunch a finished, failed or cancelled job from its ``job.json`` (training resumes itself)."""
    folder = Path(job_dir).expanduser().resolve()
    spec = _read_json(folder / "job.json")
    if not spec.get("command"):
        raise JobError(f"{folder} has no job.json; it is not a job folder")
    state = job_status(folder).get("state")
    if state in ACTIVE:
        raise JobError(f"job {folder} is still {state}; nothing to resume")
    atomic_write_json(folder / "status.json", {"state": "queued", "pid": None, "started": None,
                                               "updated": now_iso(), "command": spec["command"], "error": None,
                                               "resumed": True})
    return _launch(folder, str(spec.get("python") or sys.executable))


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


def job_status(job_dir: str | os.PathLike) -> dict:
    """``status.json`` plus ``progress`` (last progress row), ``best`` (path or None) and ``job_dir``.

    A job whose process is gone while its state says queued/running is reported (and recorded)
    as ``failed`` with the tail of ``log.txt``.
    """
    folder = Path(job_dir).expanduser().resolve()
    status = _read_json(folder / "status.json")
    if not status:
        raise JobError(f"{folder} has no status.json; it is not a job folder (lkseg jobs list shows them)")
    state = status.get("state")
    if state in ACTIVE and not pid_alive(status.get("pid")):
        stale = state == "running" or _age_s(status.get("updated")) > QUEUED_TIMEOUT_S or status.get("pid")
        if stale:
            fresh = _read_json(folder / "status.json")  # the supervisor may just have finished
            if fresh.get("state") in ACTIVE and fresh.get("pid") == status.get("pid"):
                tail = log_tail(folder)
                status = _update_status(folder, state="failed", error=f"the job's process (pid {status.get('pid')}) "
                                        f"ended without reporting; last lines of {folder / 'log.txt'}:\n{tail}")
            else:
                status = fresh
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


# -- cancelling -----------------------------------------------------------------------------
def cancel_job(job_dir: str | os.PathLike, grace_s: float = 5.0) -> dict:
    """Kill the job's whole process group (SIGTERM, SIGKILL after ``grace_s``); state ``cancelled``."""
    folder = Path(job_dir).expanduser().resolve()
    status = job_status(folder)
    if status.get("state") not in ACTIVE:
        return status
    pid = status.get("pid")
    _update_status(folder, cancel_requested=now_iso())
    if pid:
        _kill_group(int(pid), grace_s)
    _update_status(folder, state="cancelled", error=None)
    return job_status(folder)


def _kill_group(pgid: int, grace_s: float) -> None:
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


# -- the supervisor ---------------------------------------------------------------------------
def supervise(job_dir: str | os.PathLike) -> int:
    """Run the job's command as a child and record its fate in ``status.json``."""
    folder = Path(job_dir).resolve()
    spec = _read_json(folder / "job.json")
    command = spec.get("command")
    if not command:
        raise JobError(f"{folder} has no job.json with a command")
    terminated = {"flag": False}

    def on_term(signum: int, frame: Any) -> None:
        terminated["flag"] = True

    signal.signal(signal.SIGTERM, on_term)
    deadline = time.monotonic() + 2.0  # let start_job record our pid first (no lost update)
    while _read_json(folder / "status.json").get("pid") != os.getpid() and time.monotonic() < deadline:
        time.sleep(0.02)
    cwd = spec.get("cwd") if spec.get("cwd") and Path(spec["cwd"]).is_dir() else str(folder)
    env = dict(os.environ, LKSEG_JOB_DIR=str(folder), PYTHONUNBUFFERED="1")
    child = subprocess.Popen(command, stdin=subprocess.DEVNULL, cwd=cwd, env=env)
    _update_status(folder, state="running", pid=os.getpid(), child_pid=child.pid, started=now_iso(), error=None)
    code = child.wait()
    if terminated["flag"] or _read_json(folder / "status.json").get("cancel_requested"):
        _update_status(folder, state="cancelled", returncode=code)
        return 130
    if code == 0:
        progress = read_progress(folder) or {}
        _update_status(folder, state="done", returncode=0, best=progress.get("best"))
        return 0
    sys.stdout.flush()
    _update_status(folder, state="failed", returncode=code,
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


if __name__ == "__main__":
    sys.exit(main())
