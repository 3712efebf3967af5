"""Sliding-window inference with Gaussian blending, batched windows and an out-of-memory ladder.

Windows of ``roi`` voxels tile the volume with the given overlap (the last window of each axis
is flush with the far edge, as in MONAI's ``sliding_window_inference``); each window's class
probabilities are weighted by a Gaussian importance map (sigma = roi / 8, the nnU-Net choice,
Isensee et al., Nature Methods 2021) and the weighted sum is divided by the summed weights.

When a window batch runs out of memory, the batch is halved and retried down to one window,
then the stitching buffers move to the CPU (the model stays on its device), and only then does
inference give up with :class:`lkseg.errors.LkSegError`. ``memory_limit_bytes`` simulates a
device with that much memory (the buffers on the device plus the window batch are counted), so
the whole ladder can be exercised on any machine.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from lkseg.errors import Cancelled, LkSegError

log = logging.getLogger(__name__)

Predictor = Callable[[torch.Tensor], torch.Tensor]


def is_oom(exc: BaseException) -> bool:
    """True for a device out-of-memory error (CUDA, MPS or the simulated one)."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def gaussian_map(roi: Sequence[int], sigma_scale: float = 0.125, device: Any = "cpu") -> torch.Tensor:
    """A (D, H, W) Gaussian importance map with maximum 1 and a small positive floor."""
    axes = []
    for n in roi:
        sigma = max(n * sigma_scale, 1e-3)
        x = torch.arange(n, dtype=torch.float32, device=device) - (n - 1) / 2.0
        axes.append(torch.exp(-0.5 * (x / sigma) ** 2))
    g = axes[0][:, None, None] * axes[1][None, :, None] * axes[2][None, None, :]
    g = g / g.max()
    return g.clamp_min(1e-3)


def window_starts(size: int, roi: int, overlap: float) -> list[int]:
    """Start positions along one axis; the last window ends at ``size``."""
    if size <= roi:
        return [0]
    step = max(1, int(roi * (1.0 - overlap)))
    starts = list(range(0, size - roi + 1, step))
    if starts[-1] != size - roi:
        starts.append(size - roi)
    return starts


class SlidingWindow:
    """Tile, predict and blend. ``predictor`` maps a (B, Cin, *roi) batch to (B, C, *roi) probabilities."""

    def __init__(self, predictor: Predictor, num_classes: int, roi: Sequence[int], overlap: float = 0.5,
                 blend: str = "gaussian", batch_size: int = 4, device: Any = "cpu",
                 memory_limit_bytes: int | None = None, notes: list[str] | None = None) -> None:
        if len(roi) != 3 or any(int(r) < 1 for r in roi):
            raise LkSegError(f"the ROI size {tuple(roi)} must be three positive integers")
        if not 0.0 <= overlap < 1.0:
            raise LkSegError(f"the window overlap {overlap} must be in [0, 1)")
        if blend not in ("gaussian", "constant"):
            raise LkSegError(f"the window blending {blend!r} must be 'gaussian' or 'constant'")
        self.predictor = predictor
        self.num_classes = int(num_classes)
        self.roi = tuple(int(r) for r in roi)
        self.overlap = float(overlap)
        self.blend = blend
        self.batch_size = max(1, int(batch_size))
        self.device = torch.device(device)
        self.memory_limit_bytes = memory_limit_bytes
        self.notes = notes if notes is not None else []
        self.stitch_on_cpu = False
        self.skipped = 0  # windows left out by run()'s region
        self.runs = 0  # windows run

    # -- simulated device memory ---------------------------------------------------------
    def _check_memory(self, buffer_voxels: int, windows: int, in_channels: int) -> None:
        if self.memory_limit_bytes is None:
            return
        roi_vox = math.prod(self.roi)
        need = windows * (in_channels + self.num_classes) * roi_vox * 4
        if not self.stitch_on_cpu:
            need += (self.num_classes + 1) * buffer_voxels * 4
        if need > self.memory_limit_bytes:
            raise torch.OutOfMemoryError(
                f"out of memory (simulated limit {self.memory_limit_bytes} bytes, needs {need})")

    def run(self, x: torch.Tensor, progress: Callable[[float], None] | None = None,
            cancel: Any = None, region: torch.Tensor | None = None) -> torch.Tensor:
        """Blended probabilities (1, C, D, H, W) for ``x`` (1, Cin, D, H, W), on the device or CPU.

        ``region`` (a bool (D, H, W) mask of ``x``'s voxels, e.g. the body): windows holding none of its
        voxels are not run. Every voxel of ``region`` is covered only by windows that are run, so its
        probabilities are exactly those of a run without ``region``; a voxel that no run window covers is
        background (probability 1 for class 0). ``self.skipped`` counts the windows left out."""
        if x.ndim != 5 or x.shape[0] != 1:
            raise ValueError(f"expected a (1, C, D, H, W) tensor, got {tuple(x.shape)}")
        shape = tuple(x.shape[2:])
        pads = [max(0, r - s) for r, s in zip(self.roi, shape)]
        if any(pads):
            # symmetric constant-0 padding up to the ROI, as MONAI does; cropped again below
            pad_arg: list[int] = []
            for p in reversed(pads):
                pad_arg += [p // 2, p - p // 2]
            x = F.pad(x, pad_arg, mode="constant", value=0.0)
        padded = tuple(x.shape[2:])
        starts = [window_starts(padded[d], self.roi[d], self.overlap) for d in range(3)]
        windows = [(a, b, c) for a in starts[0] for b in starts[1] for c in starts[2]]
        if region is not None:
            if tuple(region.shape) != shape:
                raise ValueError(f"region {tuple(region.shape)} does not match the volume {shape}")
            if any(pads):
                region = F.pad(region, pad_arg)  # padding is never region
            run = [(a, b, c) for a, b, c in windows
                   if bool(region[a:a + self.roi[0], b:b + self.roi[1], c:c + self.roi[2]].any())]
            self.skipped = len(windows) - len(run)
            windows = run
        self.runs = len(windows)
        n_vox = math.prod(padded)
        weight = (gaussian_map(self.roi, device=self.device) if self.blend == "gaussian"
                  else torch.ones(self.roi, device=self.device))

        acc, cnt = self._allocate(padded, n_vox, x.shape[1])
        pos, bs = 0, self.batch_size
        while pos < len(windows):
            if cancel is not None and cancel.is_set():
                raise Cancelled()
            chunk = windows[pos:pos + bs]
            done = 0  # windows of this chunk already added (an OOM may strike part-way)
            try:
                self._check_memory(n_vox, len(chunk), x.shape[1])
                batch = torch.stack([x[0, :, a:a + self.roi[0], b:b + self.roi[1], c:c + self.roi[2]]
                                     for a, b, c in chunk])
                probs = self.predictor(batch).float()
                w = weight.to(probs.device)
                for n, (a, b, c) in enumerate(chunk):
                    sl = (slice(None), slice(a, a + self.roi[0]), slice(b, b + self.roi[1]), slice(c, c + self.roi[2]))
                    if acc.device == probs.device:
                        acc[0][sl].addcmul_(probs[n], w)  # in place: no temporary window copy
                        cnt[0][sl].add_(w)
                    else:  # stitching on the CPU
                        acc[0][sl] += (probs[n] * w).to(acc.device)
                        cnt[0][sl] += w.to(cnt.device)
                    done += 1
                del batch, probs
            except Exception as exc:  # noqa: BLE001 - only out-of-memory errors are handled
                if not is_oom(exc):
                    raise
                pos += done
                acc, cnt, bs = self._step_down(acc, cnt, bs, exc)
                continue
            pos += len(chunk)
            if progress is not None:
                progress(pos / max(1, len(windows)))
        if self.skipped:
            uncovered = cnt[:, 0] == 0  # only skipped windows lie here: background
            acc[:, 0][uncovered] = 1.0
            cnt[:, 0][uncovered] = 1.0
        acc /= cnt
        if any(pads):
            acc = acc[:, :, pads[0] // 2:pads[0] // 2 + shape[0], pads[1] // 2:pads[1] // 2 + shape[1],
                      pads[2] // 2:pads[2] // 2 + shape[2]]
        return acc

    def _allocate(self, padded: tuple[int, ...], n_vox: int, in_channels: int) -> tuple[torch.Tensor, torch.Tensor]:
        try:
            self._check_memory(n_vox, 0, in_channels)
            return self._buffers(padded, self.device)
        except Exception as exc:  # noqa: BLE001
            if not is_oom(exc):
                raise
            self._empty_cache()
            self.stitch_on_cpu = True
            self._note(f"stitching buffers do not fit on {self.device}: stitching on the CPU")
            return self._buffers(padded, torch.device("cpu"))

    def _buffers(self, padded: tuple[int, ...], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        acc = torch.zeros((1, self.num_classes, *padded), dtype=torch.float32, device=device)
        cnt = torch.zeros((1, 1, *padded), dtype=torch.float32, device=device)
        return acc, cnt

    def _step_down(self, acc: torch.Tensor, cnt: torch.Tensor, bs: int,
                   exc: BaseException) -> tuple[torch.Tensor, torch.Tensor, int]:
        self._empty_cache()
        if bs > 1:
            self._note(f"out of memory with {bs} windows per batch: retrying with {bs // 2}")
            return acc, cnt, bs // 2
        if not self.stitch_on_cpu:
            self.stitch_on_cpu = True
            self._note("out of memory with 1 window per batch: stitching on the CPU, model stays on "
                       f"{self.device}")
            return acc.cpu(), cnt.cpu(), bs
        raise LkSegError(
            f"out of memory on {self.device} even with one window per batch and CPU-side stitching "
            f"(ROI {self.roi}); run on the CPU (--device cpu) or use a checkpoint with a smaller ROI"
        ) from exc

    def _note(self, text: str) -> None:
        log.warning(text)
        self.notes.append(text)

    def _empty_cache(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
