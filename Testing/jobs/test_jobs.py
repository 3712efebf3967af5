"""Background jobs: real detached processes (a scripted child and real ``python -m lkseg.training``)."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from lkseg import jobs
from lkseg.cli import main as cli_main
from lkseg.errors import LkSegError

#: a stand-in training command: progress lines, a grandchild process, then "hang" or exit
SCRIPT = r"""
import json, os, subprocess, sys, time
hang = sys.argv[1] == "hang"
os.chdir(os.environ["LKSEG_JOB_DIR"])
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
open("grandchild.pid", "w").write(str(child.pid))
print("hello from the job", flush=True)
with open("progress.jsonl", "a") as fh:
    for step in (1, 2, 3):
        fh.write(json.dumps({"step": step, "epoch": 0, "loss": 1.0 / step, "lr": 0.01, "val_dice": None,
                             "eta_s": 3 - step, "time": time.time()}) + "\n")
        fh.flush()
        time.sleep(0.05)
    if not hang:
        fh.write(json.dumps({"event": "done", "best": os.path.abspath("checkpoints/best.safetensors"), "step": 3,
                             "loss": 0.3, "lr": 0.0, "val_dice": 0.75, "eta_s": 0.0, "time": time.time()}) + "\n")
child.kill()
if hang:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    open("grandchild.pid", "w").write(str(child.pid))
    time.sleep(120)
"""


def _wait(job: Path, states: tuple[str, ...], timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = jobs.job_status(job)
        if status["state"] in states:
            return status
        time.sleep(0.05)
    raise AssertionError(f"job {job} never reached {states}: {jobs.job_status(job)}")


def _wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def _gone(pid: int) -> bool:
    return not jobs.pid_alive(pid)


@pytest.mark.timeout(60)
def test_job_runs_to_done_and_reports_progress(tmp_path: Path) -> None:
    job = jobs.start_job(tmp_path / "job1", command=[sys.executable, "-c", SCRIPT, "finish"])
    first = jobs.job_status(job)
    assert first["state"] in ("queued", "running") and first["pid"]
    spec = json.loads((job / "job.json").read_text())
    assert spec["command"][-1] == "finish"
    seen = {first["state"]}
    deadline = time.monotonic() + 30
    while (state := jobs.job_status(job)["state"]) != "done" and time.monotonic() < deadline:
        seen.add(state)
        time.sleep(0.02)
    status = jobs.job_status(job)
    assert status["state"] == "done", status
    assert "running" in seen | {"running" if first["state"] == "running" else ""}
    assert status["progress"]["event"] == "done" and status["best"].endswith("best.safetensors")
    assert status["started"] and status["updated"] and status["returncode"] == 0
    assert "hello from the job" in (job / "log.txt").read_text()
    with pytest.raises(LkSegError, match="not a job folder"):
        jobs.start_job(tmp_path / "job1" / "..", command=[sys.executable, "-c", "pass"])


@pytest.mark.timeout(90)
def test_cancel_kills_the_tree_then_resume_then_sigkill_is_failed(tmp_path: Path, capsys) -> None:
    job = jobs.start_job(tmp_path / "jobs" / "a", command=[sys.executable, "-c", SCRIPT, "hang"])
    status = _wait(job, ("running",))
    _wait_for(lambda: (jobs.read_progress(job) or {}).get("step") == 3)
    _wait_for(lambda: (job / "grandchild.pid").is_file())
    time.sleep(0.3)  # the second grandchild is spawned after the last progress line
    grandchild = int((job / "grandchild.pid").read_text())
    assert jobs.job_status(job)["progress"]["loss"] == pytest.approx(1 / 3)
    with pytest.raises(LkSegError, match="still running"):
        jobs.resume_job(job)

    t0 = time.monotonic()
    cancelled = jobs.cancel_job(job)
    assert cancelled["state"] == "cancelled" and time.monotonic() - t0 < 6
    _wait_for(lambda: _gone(grandchild) and _gone(status["pid"]) and _gone(status["child_pid"]), timeout=5)
    time.sleep(0.3)
    assert jobs.job_status(job)["state"] == "cancelled"  # the supervisor did not overwrite it

    (job / "grandchild.pid").unlink()
    jobs.resume_job(job)
    resumed = _wait(job, ("running",))
    assert resumed["pid"] != status["pid"] and resumed.get("resumed") is True
    _wait_for(lambda: (job / "grandchild.pid").is_file())
    os.killpg(resumed["pid"], signal.SIGKILL)  # the whole job dies without a word (OOM killer, reboot)
    _wait_for(lambda: _gone(resumed["pid"]), timeout=5)
    failed = _wait(job, ("failed",), timeout=10)  # once the trainer (killed with it) is gone too
    assert failed["state"] == "failed" and "hello from the job" in failed["error"]
    assert "ended without reporting" in failed["error"]
    assert json.loads((job / "status.json").read_text())["state"] == "failed"  # recorded, not just reported

    other = jobs.start_job(tmp_path / "jobs" / "b", command=[sys.executable, "-c", SCRIPT, "finish"])
    _wait(other, ("done",))
    listed = jobs.list_jobs(tmp_path / "jobs")
    assert [(p.name, s["state"]) for p, s in listed] == [("a", "failed"), ("b", "done")]

    assert cli_main(["jobs", "list", str(tmp_path / "jobs")]) == 0
    assert cli_main(["jobs", "status", str(other)]) == 0
    out = capsys.readouterr().out
    assert "failed" in out and "done" in out and "step 3" in out and "val Dice 0.750" in out
    assert "best.safetensors" in out
    os.environ["LKSEG_HOME"] = str(tmp_path)
    try:
        assert jobs.default_root() == tmp_path / "jobs"
    finally:
        del os.environ["LKSEG_HOME"]


@pytest.mark.timeout(60)
def test_foreign_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("user data")
    with pytest.raises(LkSegError, match="not empty and is not a job folder"):
        jobs.start_job(tmp_path, command=[sys.executable, "-c", "pass"])
    with pytest.raises(LkSegError, match="no status.json"):
        jobs.job_status(tmp_path)
    assert (tmp_path / "mine.txt").read_text() == "user data" and not (tmp_path / "job.json").exists()


def _tiny_dataset(root: Path):
    from lkseg.checkpoint.labels import ANATOMICAL_STRUCTURE, Label, LabelTable
    from lkseg.dataset.local import LocalDataset
    from lkseg.io.image import Image

    table = LabelTable([Label(1, "liver", (220, 130, 100), ANATOMICAL_STRUCTURE, None),
                        Label(2, "spleen", (157, 108, 162), ANATOMICAL_STRUCTURE, None)], name="two organs")
    ds = LocalDataset.create(root, table, name="synthetic")
    rng = np.random.default_rng(0)
    shape = (16, 20, 20)
    zz, yy, xx = np.mgrid[: shape[0], : shape[1], : shape[2]]
    for c in range(2):
        arr, lab = rng.normal(0.1, 0.05, shape), np.zeros(shape, np.uint8)
        for value, (cz, cy, cx, level) in enumerate([(6 + c, 8, 7, 0.55), (10, 12 - c, 14, 0.9)], start=1):
            m = (zz - cz) ** 2 + (yy - cy) ** 2 + (xx - cx) ** 2 < 12
            lab[m], arr[m] = value, level
        img = Image(arr.astype(np.float32), (1.5, 1.5, 2.0), (5.0, -3.0, 1.0), np.eye(3))
        ds.add_case(img, img.with_array(lab), table)
    return ds, table


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_real_training_job_writes_a_checkpoint(tmp_path: Path) -> None:
    from lkseg.checkpoint.card import InferenceSettings, ModelCard, Preprocessing
    from lkseg.checkpoint.native import read_card, save_checkpoint
    from lkseg.models.registry import build_model

    ds, table = _tiny_dataset(tmp_path / "ds")
    card = ModelCard("threshold-test", {"thresholds": [0.4, 0.7]}, 1, table,
                     preprocessing=Preprocessing(spacing=None, intensity={"mode": "none"}),
                     inference=InferenceSettings(roi_size=(16, 16, 16), sw_batch_size=2))
    parent = save_checkpoint(tmp_path / "parent.safetensors",
                             build_model("threshold-test", 1, 3, thresholds=[0.4, 0.7]).state_dict(), card)
    job = jobs.start_job(tmp_path / "job", dataset=ds.root, checkpoint=parent, steps=3, device="cpu",
                         extra_args=["--val-every", "3", "--num-threads", "1"])
    status = _wait(job, ("done", "failed"), timeout=100)
    assert status["state"] == "done", status.get("error")
    assert status["progress"]["event"] == "done" and Path(status["best"]).is_file()
    assert read_card(status["best"]).provenance.parent_sha256
    spec = json.loads((job / "job.json").read_text())
    assert spec["command"][1:3] == ["-m", "lkseg.training"] and "--steps" in spec["argv"]
