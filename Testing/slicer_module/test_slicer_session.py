"""The Slicer module's Slicer-free work with the real core: segmenting in a background thread and in
the real worker process, exports into a local dataset, fine-tuning jobs started as the panel starts them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

MODULE_DIR = Path(__file__).resolve().parents[2] / "LargeKernelSeg"
sys.path.insert(0, str(MODULE_DIR))

import LargeKernelSegLib as glue  # noqa: E402
from geometry_cases import oblique_flipped_ijk_to_ras  # noqa: E402
from lkseg.errors import Cancelled  # noqa: E402


def test_background_task_runs_the_real_segmenter_off_the_main_thread(threshold_checkpoint):
    """The panel's flow without Slicer: volume arrays -> Image -> segment in a thread -> VTK label map."""
    import threading

    from lkseg.checkpoint.native import read_card
    from lkseg.inference.segmenter import Segmenter

    m = oblique_flipped_ijk_to_ras()
    array = np.zeros((12, 20, 18), np.float32)
    array[2:6, 3:12, 4:10] = 1.0   # organ1 band (0.5 <= x < 1.5)
    array[7:11, 10:18, 8:16] = 2.0  # organ2 band
    image = glue.image_from_volume_arrays(array, glue.numpy_to_vtk_matrix(m))
    segmenter = Segmenter.from_checkpoint(threshold_checkpoint, "cpu")
    seen = []

    def run(progress, cancel):
        seen.append(threading.current_thread().name)
        return segmenter.segment(image, progress=progress, cancel=cancel)

    task = glue.BackgroundTask(run, name="lkseg-test")
    assert task.poll()[0] == "running"  # not started yet counts as pending
    task.start()
    assert task.wait(60)
    state, fraction, _ = task.poll()
    assert state == "done" and fraction == 1.0 and seen == ["lkseg-test"]
    result = task.result()
    np.testing.assert_array_equal(result.labels.array, np.where(array >= 1.5, 2, np.where(array >= 0.5, 1, 0)))
    vtk_image, matrix = glue.labels_to_vtk_image(result.labels)
    np.testing.assert_allclose(glue.vtk_matrix_to_numpy(matrix), m, atol=1e-9)
    specs = glue.segment_specs(result.table)
    assert [s.name for s in specs] == ["organ1", "organ2"] and glue.segment_id_list(specs) == ["organ1", "organ2"]
    assert glue.card_summary(read_card(threshold_checkpoint)).startswith("Architecture: threshold-test")

    cancelled = glue.BackgroundTask(lambda progress, cancel: segmenter.segment(image, progress=progress, cancel=cancel))
    cancelled.cancel()  # cancelled before the first window batch
    cancelled.start()
    assert cancelled.wait(60)
    assert cancelled.poll()[0] == "cancelled"
    with pytest.raises(Cancelled):
        cancelled.result()
    assert glue.user_message(Cancelled()) == "Stopped: the operation was cancelled."

    failing = glue.BackgroundTask(lambda progress, cancel: 1 / 0).start()
    assert failing.wait(10) and failing.poll()[0] == "failed"
    with pytest.raises(ZeroDivisionError):
        failing.result()


def test_corrected_masks_go_into_a_local_dataset(tmp_path):
    """Export: per-segment masks (as arrayFromSegmentBinaryLabelmap returns them) -> label map -> dataset case."""
    from lkseg.checkpoint import labels as labels_mod
    from lkseg.dataset.local import LocalDataset

    table = labels_mod.get_table("FLARE21")
    m = oblique_flipped_ijk_to_ras()
    image = glue.image_from_volume_arrays(np.random.default_rng(1).normal(size=(6, 7, 8)).astype(np.float32), m)
    specs = glue.segment_specs(table)
    masks = []
    for i, spec in enumerate(specs):
        mask = np.zeros(image.array.shape, np.uint8)
        mask[i] = 1
        value = glue.label_value_for_segment(spec.name.upper(), str(spec.value), table)
        masks.append((value, mask))
    labels = image.with_array(glue.compose_label_map(masks, image.array.shape))
    ds = LocalDataset.open_or_create(tmp_path / "ds", table)
    case_id = ds.add_case(image, labels, table, case_id=glue.sanitize_case_id("Patient 7 / CT"))
    assert case_id == "Patient_7_CT" and ds.cases() == ["Patient_7_CT"]
    img2, lab2 = ds.read_case(case_id)
    np.testing.assert_array_equal(lab2.array, labels.array)
    assert lab2.same_grid(image)


def test_child_processes_find_the_same_lkseg(tmp_path, monkeypatch):
    import os
    import subprocess

    import lkseg

    from lkseg.utils.processes import child_env

    parent = glue.lkseg_parent()
    assert (parent / "lkseg" / "__init__.py").resolve() == Path(lkseg.__file__).resolve()
    # a child started in an unrelated folder, without site-packages' editable install and with no
    # PYTHONPATH of ours in this process, still imports it: the worker's and the jobs' environment
    monkeypatch.delenv("PYTHONPATH", raising=False)
    env = {"PYTHONPATH": child_env()["PYTHONPATH"], "PATH": os.environ.get("PATH", "")}
    assert "PYTHONPATH" not in os.environ
    out = subprocess.run([sys.executable, "-S", "-c", "import lkseg; print(lkseg.__file__)"], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()).resolve() == Path(lkseg.__file__).resolve()


def test_fine_tune_arguments_parse_with_the_real_trainer(tmp_path):
    from datetime import datetime

    from lkseg.training.config import build_parser

    out = glue.new_job_dir(tmp_path / "ds", now=datetime(2026, 5, 4, 3, 2, 1))
    assert out == tmp_path / "ds" / "jobs" / "finetune-20260504-030201"
    out.mkdir(parents=True)
    assert glue.new_job_dir(tmp_path / "ds", now=datetime(2026, 5, 4, 3, 2, 1)).name == "finetune-20260504-030201-2"
    argv = glue.fine_tune_argv(tmp_path / "ds", tmp_path / "m.safetensors", out, steps=300, minutes=5, device="cpu")
    args = build_parser().parse_args(argv)
    assert (args.dataset, args.out, args.checkpoint) == (tmp_path / "ds", out, tmp_path / "m.safetensors")
    assert args.steps == 300 and args.minutes is None and args.device == "cpu"
    args = build_parser().parse_args(glue.fine_tune_argv("d", "m", "o", steps=0, minutes=2.5))
    assert args.steps is None and args.minutes == 2.5 and args.device == "auto"
    args = build_parser().parse_args(glue.fine_tune_argv("d", "m", "o"))
    assert args.steps is None and args.minutes is None
    (out / "job.json").write_text(json.dumps({"argv": argv, "out": str(out)}))
    assert glue.job_total_steps(out) == 300
    (out / "job.json").write_text(json.dumps({"steps": 40}))
    assert glue.job_total_steps(out) == 40
    (out / "job.json").write_text("{broken")
    assert glue.job_total_steps(out) is None


@pytest.mark.slow
def test_background_task_drives_the_real_worker_process(threshold_checkpoint, monkeypatch):
    """What the panel does on Segment: a thread runs WorkerClient.segment, the main thread polls."""
    import os
    import time

    from lkseg.service import client as worker_client
    # as inside Slicer, where nothing puts lkseg on PYTHONPATH: the client gives the worker its own
    monkeypatch.delenv("PYTHONPATH", raising=False)
    m = oblique_flipped_ijk_to_ras()
    array = np.zeros((10, 16, 14), np.float32)
    array[2:8, 3:12, 4:10] = 1.0
    array[4:6, 5:9, 5:8] = 2.0
    image = glue.image_from_volume_arrays(array, glue.numpy_to_vtk_matrix(m))
    client = worker_client.WorkerClient(device="cpu")
    try:
        for _ in range(2):  # the second run reuses the loaded model
            fractions = []
            task = glue.BackgroundTask(lambda progress, cancel: client.segment(
                image, threshold_checkpoint, progress=progress, cancel_event=cancel, device="cpu")).start()
            deadline = time.monotonic() + 120
            while task.poll()[0] == "running":  # the panel's QTimer
                fractions.append(task.poll()[1])
                assert time.monotonic() < deadline
                time.sleep(0.02)
            assert task.poll()[0] == "done", task.poll()
            assert fractions == sorted(fractions)  # progress never goes backwards
            result = task.result()
            np.testing.assert_array_equal(result.labels.array, np.where(array >= 1.5, 2, np.where(array >= 0.5, 1, 0)))
            assert result.labels.same_grid(image)
            _, matrix = glue.labels_to_vtk_image(result.labels)
            np.testing.assert_allclose(glue.vtk_matrix_to_numpy(matrix), m, atol=1e-9)
            assert [s.name for s in glue.segment_specs(result.table)] == ["organ1", "organ2"]
    finally:
        client.close()


@pytest.mark.slow
def test_fine_tune_job_started_like_the_panel_reports_its_failure(tmp_path, threshold_checkpoint, monkeypatch):
    """Start / watch through the real lkseg.jobs: a dataset without cases fails, and the panel says why."""
    import os
    import time

    from lkseg import jobs
    from lkseg.checkpoint import labels
    from lkseg.checkpoint.native import read_card
    from lkseg.dataset.local import LocalDataset

    monkeypatch.delenv("PYTHONPATH", raising=False)  # the job's environment carries lkseg's folder
    table = read_card(threshold_checkpoint).labels
    assert isinstance(table, labels.LabelTable)
    dataset = tmp_path / "ds"
    LocalDataset.create(dataset, table)
    out = glue.new_job_dir(dataset)
    job = jobs.start_job(glue.fine_tune_argv(dataset, threshold_checkpoint, out, steps=4, device="cpu"), out=out)
    assert Path(job) == out
    deadline = time.monotonic() + 90
    while True:  # the panel's job timer
        view = glue.job_view(jobs.job_status(job), glue.read_progress(job), glue.job_total_steps(job))
        if view.finished or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert view.finished and view.state == "failed", view
    assert view.text.startswith("Failed, ") and view.best is None  # followed by the log's last line
    assert glue.job_total_steps(job) == 4


def test_model_list_names_each_bundled_model_by_modality_then_the_recent_files(tmp_path, threshold_checkpoint):
    from lkseg.app import resources

    gone = tmp_path / "deleted.safetensors"
    mr = str(resources.bundled(resources.bundled_model("mr").model))
    from LargeKernelSegLib.session import SegmentationSession

    choices = SegmentationSession.model_choices([str(threshold_checkpoint), str(gone), mr])
    assert choices[0] == ("Bundled default: Abdominal CT demo, 5 organs (CT)", "")  # "" = the bundled default
    assert choices[1] == ("Bundled: Abdominal T2 MR, 4 organs (MR T2-weighted (T2-SPIR))", mr)
    assert choices[2:] == [(threshold_checkpoint.name, str(threshold_checkpoint))]  # no missing file, no repeat
    assert SegmentationSession.resolve_checkpoint(choices[0][1]) == str(resources.default_model())
