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
The folder layout is fixed in ``docs/architecture.md`` ("Training command line and the job folder")."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from lkseg.jobs.folder import (
    ACTIVE,
    LAUNCH_RECORD,
    JobError,
    job_processes,
    job_status,
    now_iso,
    read_json,
    update_status,
)
from lkseg.utils.processes import CHILDREN, child_env, detached_options, end_tree, identity, tree
from lkseg.utils.atomic import atomic_write_json

log = logging.getLogger(__name__)


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
    (folder / LAUNCH_RECORD).unlink(missing_ok=True)  # a previous run's launcher is not this one
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
        _refuse_while_running(folder, "start another run in it")
    folder.mkdir(parents=True, exist_ok=True)


def _refuse_while_running(folder: Path, what: str) -> None:
    status = job_status(folder)
    running = tree(job_processes(folder, status))
    if status.get("state") in ACTIVE or running:
        pids = ", ".join(str(p.pid) for p in running) or "none found yet"
        raise JobError(f"job {folder} is still {status.get('state')} (processes: {pids}); cannot {what}. "
                       f"Cancel it first: lkseg jobs cancel {folder}")


def _launch(folder: Path, python: str) -> Path:
    with open(folder / "log.txt", "ab") as logfile:
        proc = subprocess.Popen([python, "-m", "lkseg.jobs", "run", str(folder)], stdin=subprocess.DEVNULL,
                                stdout=logfile, stderr=subprocess.STDOUT, close_fds=True, cwd=str(folder),
                                env=child_env(), **detached_options())
    CHILDREN[proc.pid] = proc
    # the launcher may be the supervisor itself or, under Slicer, a launcher running it as a child;
    # the supervisor records its own identity in status.json
    atomic_write_json(folder / LAUNCH_RECORD, identity(proc.pid) or {"pid": proc.pid, "created": None})
    log.info("started job %s (supervisor pid %d)", folder, proc.pid)
    return folder


def resume_job(job_dir: str | os.PathLike) -> Path:
    """Relaunch a finished, failed or cancelled job from its ``job.json`` (training resumes itself)."""
    folder = Path(job_dir).expanduser().resolve()
    spec = read_json(folder / "job.json")
    if not spec.get("command"):
        raise JobError(f"{folder} has no job.json; it is not a job folder")
    _refuse_while_running(folder, "resume it")
    (folder / LAUNCH_RECORD).unlink(missing_ok=True)
    atomic_write_json(folder / "status.json", {"state": "queued", "pid": None, "started": None,
                                               "updated": now_iso(), "command": spec["command"], "error": None,
                                               "resumed": True})
    return _launch(folder, str(spec.get("python") or sys.executable))


# -- cancelling -----------------------------------------------------------------------------
def cancel_job(job_dir: str | os.PathLike, grace_s: float = 5.0) -> dict:
    """End the job's whole process tree (launcher, supervisor, trainer and their children: terminate,
    kill after ``grace_s``); state ``cancelled``. Raises :class:`JobError` if a process survives."""
    folder = Path(job_dir).expanduser().resolve()
    status = job_status(folder)
    processes = tree(job_processes(folder, status))
    if status.get("state") not in ACTIVE and not processes:
        return status
    update_status(folder, cancel_requested=now_iso())
    survivors = end_tree(processes, grace_s)
    if survivors:
        raise JobError(f"job {folder}: processes {[p.pid for p in survivors]} could not be ended; end them by hand")
    if job_status(folder).get("state") in ACTIVE:
        update_status(folder, state="cancelled", error=None)
    return job_status(folder)
