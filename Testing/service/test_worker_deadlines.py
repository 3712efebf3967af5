"""Every blocking call of the worker client has a deadline: a suspended (SIGSTOP) worker is detected by
its missing heartbeat, cancel() returns at once and the request ends soon even when the worker cannot
answer, the client stays usable, and temporary folders of killed clients are removed."""

from __future__ import annotations

import os
import signal
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from lkseg.checkpoint.native import save_checkpoint
from lkseg.errors import Cancelled
from lkseg.io.image import Image
from lkseg.service.client import (
    TMP_PREFIX,
    WorkerClient,
    WorkerError,
    remove_stale_folders,
)


@pytest.fixture
def slow(tmp_path: Path, threshold_card) -> Path:
    model, card = threshold_card(roi=(8, 8, 8), sw_batch_size=1)  # many tiny windows: seconds of work
    return save_checkpoint(tmp_path / "slow.safetensors", model.state_dict(), card)


def _big() -> Image:
    a = np.zeros((96, 96, 96), np.float32)
    a[20:60, 20:60, 20:60] = 1.0
    return Image(a, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), np.eye(3))


def _run_in_thread(client: WorkerClient, checkpoint: Path) -> tuple[threading.Thread, dict, threading.Event]:
    started, box = threading.Event(), {}

    def progress(fraction: float, stage: str) -> None:
        if stage == "model":
            started.set()

    def run() -> None:
        try:
            box["result"] = client.segment(_big(), checkpoint, progress=progress)
        except BaseException as exc:  # noqa: BLE001
            box["error"] = exc
        box["end"] = time.monotonic()

    thread = threading.Thread(target=run)
    thread.start()
    assert started.wait(60), "the worker never reached the model stage"
    return thread, box, started


@pytest.mark.timeout(120)
def test_a_suspended_worker_is_detected_by_its_missing_heartbeat(slow):
    with WorkerClient(device="cpu", heartbeat_timeout_s=3.0) as client:
        thread, box, _ = _run_in_thread(client, slow)
        pid = client.pid
        t0 = time.monotonic()
        os.kill(pid, signal.SIGSTOP)
        thread.join(30)
        assert isinstance(box.get("error"), WorkerError) and "stopped answering" in str(box["error"])
        assert box["end"] - t0 < 8
        small = Image(np.ones((8, 8, 8), np.float32), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), np.eye(3))
        assert client.segment(small, slow).labels.array.shape == (8, 8, 8)  # a fresh worker serves
        assert client.pid != pid
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]


@pytest.mark.timeout(120)
def test_cancel_returns_at_once_even_when_the_worker_cannot_answer(slow):
    with WorkerClient(device="cpu", heartbeat_timeout_s=60.0, cancel_grace_s=1.0) as client:
        thread, box, _ = _run_in_thread(client, slow)
        os.kill(client.pid, signal.SIGSTOP)
        t0 = time.monotonic()
        client.cancel()
        assert time.monotonic() - t0 < 1.0
        thread.join(30)
        assert isinstance(box.get("error"), Cancelled)
        assert box["end"] - t0 < 4
        assert not client.alive  # ended, not left stopped
        small = Image(np.ones((8, 8, 8), np.float32), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), np.eye(3))
        assert client.segment(small, slow).labels.array.shape == (8, 8, 8)


def test_temporary_folders_of_dead_clients_are_removed():
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = Path(tempfile.gettempdir()) / f"{TMP_PREFIX}{int(dead.stdout)}-abc"
    stale.mkdir()
    (stale / "r1-input.npz").write_bytes(b"a patient's volume")
    mine = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-"))
    try:
        assert stale in remove_stale_folders()
        assert not stale.exists() and mine.exists()  # a live client's folder stays
        client = WorkerClient(device="cpu")
        folder = client.tmpdir
        client.close()
        assert not folder.exists()
    finally:
        mine.rmdir()
