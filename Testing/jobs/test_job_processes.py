"""A job is one process tree: the trainer stops when its supervisor dies, cancel ends every process
(also under a launcher that runs the real interpreter as its child, as Slicer's PythonSlicer does),
and resume refuses while any process of the job still runs. Real ``python -m lkseg.training`` jobs."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import psutil
import pytest
from lkseg import jobs
from lkseg.errors import LkSegError
from training_cases import make_dataset, threshold_checkpoint


def _start(tmp_path: Path, python: str = sys.executable) -> Path:
    make_dataset(tmp_path / "ds")
    parent = threshold_checkpoint(tmp_path / "parent.safetensors")
    argv = ["--dataset", str(tmp_path / "ds"), "--checkpoint", str(parent), "--steps", "100000", "--val-every",
            "100000", "--checkpoint-every", "5", "--roi", "16", "16", "16", "--device", "cpu", "--num-threads", "1"]
    return jobs.start_job(argv, out=tmp_path / "job", python=python)


def _wait(predicate, timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _training(job: Path) -> dict:
    _wait(lambda: (jobs.job_status(job).get("child_pid") and (jobs.read_progress(job) or {}).get("step", 0) >= 2),
          what="the trainer's first steps")
    return jobs.job_status(job)


def _processes_of(job: Path) -> list[psutil.Process]:
    """Every live process whose command line names the job folder (supervisor, trainer, launchers)."""
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        try:
            if p.info["status"] != psutil.STATUS_ZOMBIE and any(str(job) in a for a in (p.info["cmdline"] or [])):
                found.append(p)
        except psutil.NoSuchProcess:
            continue
    return found


@pytest.mark.timeout(180)
def test_the_trainer_stops_when_its_supervisor_is_killed(tmp_path):
    job = _start(tmp_path)
    status = _training(job)
    os.kill(status["pid"], signal.SIGKILL)
    trainer = psutil.Process(status["child_pid"])
    trainer.wait(timeout=30)  # it saves its resume state and exits by itself
    status = jobs.job_status(job)
    assert status["state"] == "failed" and "ended without reporting" in status["error"]
    assert not _processes_of(job)
    steps = [r["step"] for r in _rows(job)]
    jobs.resume_job(job)  # one trainer again, continuing after the saved step
    _wait(lambda: len(_rows(job)) > len(steps) + 2, what="the resumed run's steps")
    jobs.cancel_job(job, grace_s=10)
    resumed = [r["step"] for r in _rows(job)]
    assert resumed == sorted(set(resumed)), "steps repeat or go backwards: two trainers wrote the log"


def _rows(job: Path) -> list[dict]:
    import json

    rows = [json.loads(line) for line in (job / "progress.jsonl").read_text().splitlines() if line.strip()]
    return [r for r in rows if isinstance(r.get("step"), int) and "event" not in r]


@pytest.mark.timeout(180)
def test_cancel_ends_the_whole_tree_under_a_launcher(tmp_path):
    launcher = tmp_path / "PythonSlicer"  # like Slicer's launcher: runs the real interpreter as its child
    launcher.write_text(f"#!/bin/sh\n\"{sys.executable}\" \"$@\"\n")
    launcher.chmod(0o755)
    job = _start(tmp_path, python=str(launcher))
    status = _training(job)
    tree = _processes_of(job)
    assert len(tree) >= 3, [p.cmdline() for p in tree]  # launcher, supervisor, trainer at least
    assert psutil.Process(status["pid"]).parent().name() != "python"  # the supervisor runs under the launcher
    t0 = time.monotonic()
    assert jobs.cancel_job(job, grace_s=10)["state"] == "cancelled"
    assert time.monotonic() - t0 < 20
    assert not _processes_of(job)


@pytest.mark.timeout(180)
def test_resume_refuses_while_a_trainer_of_the_job_still_runs(tmp_path):
    job = _start(tmp_path)
    status = _training(job)
    trainer = psutil.Process(status["child_pid"])
    trainer.suspend()  # it cannot notice its supervisor's death while stopped
    os.kill(status["pid"], signal.SIGKILL)
    psutil.Process(status["pid"]).wait(timeout=10) if psutil.pid_exists(status["pid"]) else None
    with pytest.raises(LkSegError, match="still"):
        jobs.resume_job(job)
    jobs.cancel_job(job, grace_s=2)
    assert not trainer.is_running() or trainer.status() == psutil.STATUS_ZOMBIE
    assert not _processes_of(job)
