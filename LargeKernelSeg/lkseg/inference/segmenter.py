"""From a volume to organ labels on its exact voxels.

:class:`Segmenter` holds a network and its model card. ``segment(image)`` preprocesses as the
card says (:mod:`lkseg.preprocessing`), runs sliding-window inference with Gaussian blending
(:mod:`lkseg.inference.sliding_window`; mixed precision and batched windows on CUDA, an out-of-memory
ladder), resamples the class probabilities back onto the input grid by physical coordinates,
takes the argmax and returns a :class:`SegmentationResult` whose label map has exactly the
input's geometry.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lkseg.errors import Cancelled, LkSegError
from lkseg.inference.back_resampling import labels_on_source
from lkseg.inference.modality import modality_warning
from lkseg.inference.sliding_window import SlidingWindow, is_oom
from lkseg.io.image import Image
from lkseg.io.integrity import finite_voxels
from lkseg.preprocessing.pipeline import Preprocessed, preprocess
from lkseg.inference.fast_model import prepare_for_inference, uses_channels_last
from lkseg.utils.devices import autocast, inference_dtype, precision_name, resolve_device

log = logging.getLogger(__name__)

Progress = Callable[[float, str], None]

#: overall progress fraction at the end of each stage
_STAGES = {"preprocess": 0.05, "model": 0.90, "resample": 0.97, "postprocess": 1.0}
#: on the CPU, a window batch holds at most this many input voxels (see Segmenter.window_batch)
CPU_BATCH_VOXELS = 96 ** 3


@dataclass
class SegmentationResult:
    """A label map on the input's grid, its label table, timings (s) per stage and the device."""

    labels: Image
    table: Any  # lkseg.checkpoint.labels.LabelTable
    timings: dict[str, float]
    device: str
    notes: list[str] = field(default_factory=list)  # fall-backs taken (out of memory, ...)
    precision: str = "fp32"  # what the network ran in: fp32, bf16 or fp16
    windows: tuple[int, int] = (0, 0)  # sliding windows run, and left out as air (skip_empty_windows)


class Segmenter:
    """A network plus its model card, ready to segment volumes on one device.

    ``memory_limit_bytes`` simulates a device with that much memory for the window batches and
    stitching buffers (see :mod:`lkseg.inference.sliding_window`). ``precision`` (``auto``, ``fp32``,
    ``bf16``, ``fp16``): ``auto`` autocasts to bfloat16 on CUDA and on CPUs with native bfloat16
    (:func:`lkseg.utils.devices.inference_dtype`) unless the card says ``inference.precision: fp32``.
    ``skip_empty_windows`` leaves out windows that hold only air (:mod:`lkseg.preprocessing.body`).
    The model is prepared for inference in place (:mod:`lkseg.inference.fast_model`: same state dict).
    """

    def __init__(self, model: torch.nn.Module, card: Any, device: str | torch.device = "auto",
                 memory_limit_bytes: int | None = None, precision: str = "auto",
                 skip_empty_windows: bool = True, channels_last: bool | None = None) -> None:
        self.device = resolve_device(device)
        self.card = card
        if precision == "auto" and getattr(card.inference, "precision", "auto") == "fp32":
            precision = "fp32"
        self.dtype = inference_dtype(self.device, precision)
        self.channels_last = uses_channels_last(self.device, channels_last)
        self.model = prepare_for_inference(model, self.device, self.channels_last)
        self.memory_limit_bytes = memory_limit_bytes
        self.skip_empty_windows = skip_empty_windows
        self.load_seconds = 0.0

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "auto", **options: Any) -> "Segmenter":
        """Load a native checkpoint (:func:`lkseg.checkpoint.load_checkpoint`) onto ``device``."""
        from lkseg.checkpoint.native import load_checkpoint

        t0 = time.perf_counter()
        target = resolve_device(device)
        model, card = load_checkpoint(path, device="cpu")
        seg = cls(model, card, target, **options)
        seg.load_seconds = time.perf_counter() - t0
        return seg

    @property
    def table(self) -> Any:
        return self.card.labels

    def segment(self, image: Image, progress: Progress | None = None, cancel: Any = None, tta: bool = False,
                largest_component: bool | None = None, sw_batch_size: int | None = None) -> SegmentationResult:
        """Segment ``image``; ``progress(fraction, stage)``; ``cancel.is_set()`` checked between window batches.

        ``largest_component``: keep only the largest piece of each organ; None follows the card."""
        if not isinstance(image, Image):
            raise LkSegError(f"segment() needs an lkseg.io.image.Image, got {type(image).__name__}")
        if int(getattr(self.card, "in_channels", 1)) != 1:
            raise LkSegError(f"the checkpoint expects {self.card.in_channels} input channels; "
                             "segment() takes a single-channel volume")
        report = progress or (lambda f, s: None)
        timings: dict[str, float] = {}
        notes: list[str] = []
        source = image
        image, fixed = finite_voxels(image)  # NaN/Inf voxels: replaced, and said
        if fixed:
            log.warning("%s", fixed)
            notes.append(fixed)
        mismatch = modality_warning(image.array, getattr(self.card, "modality", ""))
        if mismatch:
            log.warning("%s", mismatch)
            notes.append(mismatch)
        num_classes = int(self.card.out_channels)
        settings = self.card.inference
        t_all = time.perf_counter()
        with torch.inference_mode():
            report(0.0, "preprocess")
            t0 = time.perf_counter()
            prep = self._preprocess(image, notes)
            timings["preprocess"] = time.perf_counter() - t0
            report(_STAGES["preprocess"], "preprocess")

            t0 = time.perf_counter()
            window = SlidingWindow(
                self._predictor(tta, num_classes, cancel), num_classes, tuple(settings.roi_size),
                overlap=float(settings.overlap), blend=str(getattr(settings, "blend", "gaussian")),
                batch_size=self._batch(sw_batch_size, notes), device=self.device,
                memory_limit_bytes=self.memory_limit_bytes, notes=notes)
            lo, hi = _STAGES["preprocess"], _STAGES["model"]
            probs = window.run(prep.tensor, progress=lambda f: report(lo + (hi - lo) * f, "model"), cancel=cancel,
                               region=prep.body)
            windows = (window.runs, window.skipped)
            del prep.tensor
            self._sync()
            timings["model"] = time.perf_counter() - t0

            t0 = time.perf_counter()
            lo, hi = _STAGES["model"], _STAGES["resample"]
            labels = self._back_to_source(probs, prep, num_classes, notes,
                                          lambda f: report(lo + (hi - lo) * f, "resample"))
            del probs
            timings["resample"] = time.perf_counter() - t0
            report(_STAGES["resample"], "resample")

            t0 = time.perf_counter()
            if largest_component is None:
                largest_component = bool(getattr(settings, "largest_component", False))
            if largest_component:
                from lkseg.inference.postprocessing import keep_largest_component

                labels = keep_largest_component(labels)
            timings["postprocess"] = time.perf_counter() - t0
        timings["total"] = time.perf_counter() - t_all
        report(1.0, "done")
        return SegmentationResult(source.with_array(labels), self.table, timings, str(self.device), notes,
                                  precision_name(self.dtype), windows)

    def window_batch(self) -> int:
        """Windows per batch: the card's on a GPU; on the CPU at most :data:`CPU_BATCH_VOXELS` input voxels
        (one 96^3 window), since batching gains the CPU nothing once a window fills its cores and every
        window more costs activation memory (the paper-size UX-Net: ~1.5 GB per 96^3 window in float32). One for a
        network whose samples read each other's data (DeformUX-Net's official offset layout), so that every
        window gets the output the network computes for it alone, whatever the device's batch."""
        if getattr(self.model, "samples_interact", False):
            return 1
        card_batch = int(self.card.inference.sw_batch_size)
        if self.device.type != "cpu":
            return card_batch
        return max(1, min(card_batch, CPU_BATCH_VOXELS // math.prod(self.card.inference.roi_size)))

    def _batch(self, requested: int | None, notes: list[str]) -> int:
        if requested and requested > 1 and getattr(self.model, "samples_interact", False):
            notes.append(f"{requested} windows per batch were asked for, but this network's samples read each other's "
                         "data (official DeformUX-Net offsets): one window per batch")
            return 1
        return int(requested or self.window_batch())

    # -- stages ------------------------------------------------------------------------------
    def _resample_device(self) -> torch.device:
        # 3D grid_sample is not implemented on Apple MPS: resample on the CPU there
        return torch.device("cpu") if self.device.type == "mps" else self.device

    def _preprocess(self, image: Image, notes: list[str]) -> Preprocessed:
        def on(device: torch.device | str) -> Preprocessed:
            prep = preprocess(image, self.card.preprocessing, device, self.skip_empty_windows,
                              getattr(self.card, "modality", ""))
            prep.tensor = prep.tensor.to(self.device)
            return prep

        try:
            return on(self._resample_device())
        except Exception as exc:  # noqa: BLE001
            if self.device.type == "cpu" or not is_oom(exc):
                raise
            self._empty_cache()
            notes.append(f"out of memory while resampling on {self.device}: resampled on the CPU")
            return on("cpu")

    def _back_to_source(self, probs: torch.Tensor, prep: Preprocessed, num_classes: int,
                        notes: list[str], progress: Callable[[float], None] | None = None) -> np.ndarray:
        probs = probs.to(self._resample_device())
        try:
            return labels_on_source(probs, prep.grid, prep.source, num_classes, progress=progress)
        except Exception as exc:  # noqa: BLE001
            if probs.device.type == "cpu" or not is_oom(exc):
                raise
            self._empty_cache()
            notes.append(f"out of memory while resampling back on {probs.device}: done on the CPU")
            return labels_on_source(probs.cpu(), prep.grid, prep.source, num_classes, progress=progress)

    def _predictor(self, tta: bool, num_classes: int, cancel: Any = None) -> Callable[[torch.Tensor], torch.Tensor]:
        flips: list[tuple[int, ...]] = [()] + ([(2,), (3,), (4,)] if tta else [])

        def predict(batch: torch.Tensor) -> torch.Tensor:
            total = None
            for n, dims in enumerate(flips):
                if n and cancel is not None and cancel.is_set():  # TTA passes are long: check between them too
                    raise Cancelled()
                inp = batch.flip(dims) if dims else batch
                if self.channels_last:
                    inp = inp.contiguous(memory_format=torch.channels_last_3d)
                with autocast(self.device, self.dtype):
                    out = self.model(inp)
                if isinstance(out, (list, tuple)):  # deep supervision: full resolution first
                    out = out[0]
                if out.shape[1] != num_classes:
                    raise LkSegError(f"the network returned {out.shape[1]} channels but the model card "
                                     f"lists {num_classes} classes; the checkpoint is inconsistent")
                p = torch.softmax(out.float(), dim=1)
                if dims:
                    p = p.flip(dims)
                total = p if total is None else total + p
            return total / len(flips)

        return predict

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def _empty_cache(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def segment_file(input: str | Path, checkpoint: str | Path | Segmenter, output: str | Path | None = None,
                 device: str = "auto", tta: bool = False, largest_component: bool | None = None,
                 progress: Progress | None = None, cancel: Any = None) -> SegmentationResult:
    """Read ``input``, segment it with ``checkpoint`` (a path or a ready :class:`Segmenter`) and
    write the labels to ``output`` (format by suffix, see :func:`lkseg.io.export.write_labels`)."""
    from lkseg.io.imageio import read_image

    segmenter = checkpoint if isinstance(checkpoint, Segmenter) else Segmenter.from_checkpoint(checkpoint, device)
    t0 = time.perf_counter()
    image = read_image(input)
    load = time.perf_counter() - t0
    result = segmenter.segment(image, progress=progress, cancel=cancel, tta=tta, largest_component=largest_component)
    result.timings["load"] = load
    if output is not None:
        from lkseg.io.export import write_labels

        t0 = time.perf_counter()
        write_labels(result.labels, result.table, output)
        result.timings["write"] = time.perf_counter() - t0
    return result
