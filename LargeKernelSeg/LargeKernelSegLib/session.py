"""The panel's work that needs no Slicer: one long-lived segmentation worker and its running task,
the model file in use, exports of corrected labels and fine-tuning jobs.

Every method takes and returns plain Python / ``lkseg`` objects (``Image``, ``LabelTable``, paths),
so the Slicer logic only converts between nodes and these calls, and the same session is tested
without Slicer. ``lkseg`` is imported inside the methods: the module loads before torch is installed.
"""

from __future__ import annotations

import logging
import os

from .finetune import fine_tune_argv, job_total_steps, new_job_dir
from .paths import export_path, sanitize_case_id
from .summary import job_view, read_progress
from .task import BackgroundTask


class SegmentationSession:
    """The worker client (started on first use and reused), the running task and its model card."""

    def __init__(self):
        self._client = None
        self.task = None
        self.card = None  # model card of the running / last segmentation

    @staticmethod
    def resolve_checkpoint(path):
        """The chosen checkpoint, or the bundled default when none is chosen."""
        if path:
            return os.path.abspath(path)
        from lkseg.app import resources
        default = resources.default_model()
        if default is None:
            from lkseg.errors import LkSegError
            raise LkSegError("No model file is chosen and this installation has no bundled default model: choose a model file.")
        return str(default)

    @staticmethod
    def model_choices(recent=()):
        """(text, path) entries of the model list: the bundled default (path ""), the other bundled
        models by title and modality, then the recent files that still exist."""
        from lkseg.app import resources
        choices = []
        for entry, path in resources.bundled_models():
            default = entry.model == resources.DEFAULT_MODEL
            choices.append((f"Bundled default: {entry.label}" if default else f"Bundled: {entry.label}",
                            "" if default else str(path)))
        if not choices:
            choices.append(("Bundled default model (not installed)", ""))
        bundled = {os.path.abspath(path) for _, path in choices if path}
        choices += [(os.path.basename(path), path) for path in recent
                    if os.path.isfile(path) and os.path.abspath(path) not in bundled]
        return choices

    def read_card(self, path):
        from lkseg.checkpoint.native import read_card
        return read_card(self.resolve_checkpoint(path))

    def is_running(self):
        return self.task is not None and self.task.running

    def start(self, image, checkpoint, device="auto"):
        """Segment ``image`` in the worker process, from a background thread; returns the task to poll."""
        if self.is_running():
            raise RuntimeError("a segmentation is already running")
        self.card = self.read_card(checkpoint)  # a bad model file fails here, before any work starts
        if self._client is None:  # one long-lived worker: the second run reuses the loaded model
            from lkseg.service.client import WorkerClient
            self._client = WorkerClient(device=device)
        client = self._client
        self.task = BackgroundTask(  # the thread only talks to the worker, never to Slicer
            lambda progress, cancel: client.segment(image, checkpoint, progress=progress, cancel_event=cancel,
                                                    device=device))
        return self.task.start()

    def cancel(self):
        if self.task is not None:
            self.task.cancel()
        if self._client is not None:
            try:
                self._client.cancel()
            except Exception:
                logging.exception("LargeKernelSeg: cancelling the worker failed")

    def close(self):
        if self._client is not None:
            try:
                self._client.close()
            except Exception:
                logging.exception("LargeKernelSeg: closing the worker failed")
        self._client = None


def export_to_dataset(folder, volume_name, case):
    """Add a corrected case to the local dataset in ``folder``; returns the case id.

    ``case()`` returns ``(image, labels, table)``; it is called only once the folder is known.
    """
    from lkseg.dataset.local import LocalDataset
    from lkseg.errors import LkSegError
    if not folder:
        raise LkSegError("Choose a dataset folder first (Export section).")
    image, labels, table = case()
    dataset = LocalDataset.open_or_create(folder, table)
    return dataset.add_case(image, labels, table, case_id=sanitize_case_id(volume_name), map_by_name=True)


def export_to_file(folder, volume_name, fmt, case):
    """Write the labels of ``case()`` (``(image, labels, table)``) as ``fmt`` (NIfTI, .seg.nrrd) to
    ``<folder>/exports``; returns the path."""
    from lkseg.errors import LkSegError
    from lkseg.io import export
    if not folder:
        raise LkSegError("Choose a dataset folder first: exported files go to its 'exports' folder.")
    _, labels, table = case()
    folder = os.path.join(folder, "exports")
    os.makedirs(folder, exist_ok=True)
    path = export_path(folder, volume_name, fmt)
    export.write_labels(labels, table, path)
    return path


def start_fine_tune(dataset_folder, checkpoint, steps, minutes, device):
    """Start a detached fine-tuning job in ``<dataset>/jobs/``; returns its folder (it outlives the panel)."""
    from lkseg import jobs
    from lkseg.errors import LkSegError
    if not dataset_folder:
        raise LkSegError("Choose the dataset folder with your corrected cases first (Export section).")
    out = new_job_dir(dataset_folder)
    return jobs.start_job(fine_tune_argv(dataset_folder, checkpoint, out, steps, minutes, device), out=out)


def fine_tune_view(job_dir):
    """What the panel shows of a job: :class:`~LargeKernelSegLib.summary.JobView`."""
    from lkseg import jobs
    return job_view(jobs.job_status(job_dir), read_progress(job_dir), job_total_steps(job_dir))


def cancel_fine_tune(job_dir):
    from lkseg import jobs
    jobs.cancel_job(job_dir)
