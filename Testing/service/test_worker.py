"""The segmentation worker: a real ``python -m lkseg.service.worker`` process on CPU, driven by WorkerClient."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from lkseg.checkpoint.native import save_checkpoint
from lkseg.errors import Cancelled, LkSegError
from lkseg.io.image import Image
from lkseg.service.client import WorkerClient, WorkerError


def _volume(n: int) -> tuple[Image, np.ndarray]:
    """Two boxes at intensities 1 and 2 on an oblique, anisotropic grid; expected labels = intensities."""
    a = np.zeros((n, n + 2, n + 4), np.float32)
    a[2:n // 2, 3:n // 2, 4:n // 2] = 1.0
    a[n // 2 + 2:n - 3, n // 2:n - 2, n // 2:n - 1] = 2.0
    theta = 0.3
    direction = np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]])
    return Image(a, (0.8, 1.0, 1.5), (10.0, -5.0, 3.0), direction), a.astype(np.int64)


@pytest.fixture
def fast_checkpoint(tmp_path: Path, threshold_card) -> Path:
    model, card = threshold_card(roi=(16, 16, 16))
    return save_checkpoint(tmp_path / "fast.safetensors", model.state_dict(), card)


@pytest.fixture
def slow_checkpoint(tmp_path: Path, threshold_card) -> Path:
    """Many tiny windows, one per batch: a 96^3 volume takes ~2.5 s on CPU, cancel points every few ms."""
    model, card = threshold_card(roi=(8, 8, 8), sw_batch_size=1)
    return save_checkpoint(tmp_path / "slow.safetensors", model.state_dict(), card)


@pytest.mark.timeout(120)
def test_worker_caches_model_cancels_and_recovers(fast_checkpoint: Path, slow_checkpoint: Path) -> None:
    image, expected = _volume(32)
    with WorkerClient(device="cpu") as client:
        assert not client.alive  # started lazily
        stages: list[tuple[float, str]] = []
        first = client.segment(image, fast_checkpoint, progress=lambda f, s: stages.append((f, s)))
        assert client.alive
        reply1 = dict(client.last_reply)
        assert reply1["loaded_model"] is True and reply1["timings"]["load"] > 0.01
        np.testing.assert_array_equal(first.labels.array, expected)
        assert first.labels.same_grid(image)
        assert first.table.names == ["organ1", "organ2"]
        assert first.precision == reply1["precision"] in ("fp32", "bf16")  # what the network ran in, passed on
        assert first.windows == tuple(reply1["windows"]) and first.windows[0] >= 1
        fractions = [f for f, _ in stages]
        assert fractions == sorted(fractions) and fractions[-1] == 1.0

        second = client.segment(image, fast_checkpoint)
        reply2 = client.last_reply
        assert reply2["loaded_model"] is False
        assert reply2["timings"]["load"] < reply1["timings"]["load"] / 10  # no reload: the model stayed
        np.testing.assert_array_equal(second.labels.array, expected)
        pid = client.pid

        # cancel mid-way, after the first model progress event
        big, _ = _volume(96)
        started = threading.Event()
        def on_progress(f: float, stage: str) -> None:
            if stage == "model" and f > 0.06:
                started.set()
        box: dict = {}
        def run() -> None:
            try:
                box["result"] = client.segment(big, slow_checkpoint, progress=on_progress)
            except BaseException as exc:  # noqa: BLE001
                box["error"] = exc
            box["end"] = time.perf_counter()
        thread = threading.Thread(target=run)
        thread.start()
        assert started.wait(60), "no model progress from the worker"
        t_cancel = time.perf_counter()
        client.cancel()
        thread.join(30)
        assert isinstance(box.get("error"), Cancelled), box
        assert box["end"] - t_cancel < 1.5
        assert client.pid == pid  # same worker, still serving
        again = client.segment(image, fast_checkpoint)
        np.testing.assert_array_equal(again.labels.array, expected)

        # kill -9 during a request: a clear WorkerError with the log tail, then a fresh worker
        started.clear()
        box.clear()
        thread = threading.Thread(target=run)
        thread.start()
        assert started.wait(60)
        os.kill(pid, signal.SIGKILL)
        thread.join(30)
        error = box.get("error")
        assert isinstance(error, WorkerError) and isinstance(error, LkSegError), box
        assert "died" in str(error) and "exit code -9" in str(error) and "worker" in str(error).lower()
        assert "ready" in str(error)  # the tail of the worker's log comes with the message
        assert not client.alive
        recovered = client.segment(image, fast_checkpoint)
        np.testing.assert_array_equal(recovered.labels.array, expected)
        assert client.pid not in (None, pid) and client.last_reply["loaded_model"] is True
    assert not client.alive


@pytest.mark.timeout(120)
def test_worker_reloads_a_checkpoint_rewritten_at_the_same_path(tmp_path: Path, threshold_card) -> None:
    """Fine-tuning writes best.safetensors again under the same name: the next request must use the new weights."""
    image, expected = _volume(24)
    path = tmp_path / "best.safetensors"
    model, card = threshold_card(roi=(16, 16, 16))
    save_checkpoint(path, model.state_dict(), card)
    with WorkerClient(device="cpu") as client:
        np.testing.assert_array_equal(client.segment(image, path).labels.array, expected)
        model, card = threshold_card(thresholds=(1.5, 2.5), roi=(16, 16, 16))  # organ1 is now the bright box
        save_checkpoint(path, model.state_dict(), card)
        again = client.segment(image, path)
        assert client.last_reply["loaded_model"] is True
        np.testing.assert_array_equal(again.labels.array, (expected == 2).astype(np.int64))


@pytest.mark.timeout(60)
def test_worker_reports_user_errors_and_keeps_serving(tmp_path: Path, fast_checkpoint: Path) -> None:
    image, expected = _volume(20)
    with WorkerClient(device="cpu") as client:
        with pytest.raises(LkSegError, match="missing.safetensors") as info:
            client.segment(image, tmp_path / "missing.safetensors")
        assert not isinstance(info.value, WorkerError)
        bad = tmp_path / "bad.safetensors"
        bad.write_bytes(b"not a checkpoint")
        with pytest.raises(LkSegError, match="bad.safetensors"):
            client.segment(image, bad)
        assert client.alive
        result = client.segment(image, fast_checkpoint, largest_component=True)
        np.testing.assert_array_equal(result.labels.array, expected)
        assert client.ping()["pid"] == client.pid


@pytest.mark.timeout(60)
def test_protocol_by_hand_stdout_is_protocol_only(tmp_path: Path, fast_checkpoint: Path) -> None:
    """Raw JSON lines, a NIfTI input and output (the documented alternative to .npz)."""
    from lkseg.io.imageio import read_image, write_image

    image, expected = _volume(20)
    src, dst = tmp_path / "in.nii.gz", tmp_path / "out.nii.gz"
    write_image(image, src)
    requests = [{"cmd": "ping", "id": "p"}, "this is not json",
                {"cmd": "segment", "id": 7, "checkpoint": str(fast_checkpoint), "input": str(src),
                 "output": str(dst), "options": {"device": "cpu"}}]
    proc = subprocess.Popen([sys.executable, "-m", "lkseg.service.worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        for r in requests:
            proc.stdin.write((r if isinstance(r, str) else json.dumps(r)) + "\n")
        proc.stdin.flush()
        events = []
        while not events or events[-1].get("event") not in ("done", "error", "cancelled") or events[-1]["id"] != 7:
            line = proc.stdout.readline()
            assert line, "the worker closed stdout"
            events.append(json.loads(line))  # every stdout line is protocol JSON
        proc.stdin.write(json.dumps({"cmd": "shutdown"}) + "\n")
        proc.stdin.flush()
        assert proc.wait(20) == 0
        assert proc.stdout.read() == ""
    finally:
        if proc.poll() is None:
            proc.kill()
    assert events[0]["event"] == "pong" and events[1]["kind"] == "protocol"
    done = events[-1]
    assert done["event"] == "done" and done["loaded_model"] is True, events[-1]
    assert any(e.get("event") == "progress" and e["id"] == 7 for e in events)
    labels = read_image(dst)
    np.testing.assert_array_equal(labels.array, expected)
