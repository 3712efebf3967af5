#!/usr/bin/env python
"""Back-resampling (network probabilities -> labels on the input grid) on a 512x512x300 CT-sized grid:
the per-axis path for axis-aligned grids against the general per-voxel path, in one run, same labels.

The network grid is 3 mm over a 0.8 x 0.8 x 1.5 mm input; the probabilities are 14 smoothed boxes (so
the boundary cells that need interpolation are a realistic few percent). Issue 15's target: <= 3 s of
the 512x512x300 end to end on 2 CPU cores.

    python scripts/benchmark_back_resampling.py [--device cpu|cuda] [--classes 14]
"""

from __future__ import annotations

import argparse
import time
from unittest import mock

import numpy as np
import torch
import torch.nn.functional as F

from lkseg.inference import back_resampling
from lkseg.preprocessing.spatial import Grid, network_grid


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--classes", type=int, default=14)
    args = p.parse_args()
    m = np.eye(4)
    m[:3, :3] = np.diag([0.8, 0.8, 1.5])
    m[:3, 3] = (-200.0, -200.0, -300.0)
    source = Grid((300, 512, 512), m)
    grid = network_grid(source, "RAS", (3.0, 3.0, 3.0))
    gen = torch.Generator().manual_seed(0)
    lab = torch.zeros(grid.shape, dtype=torch.long)
    for c in range(1, args.classes):
        a = [int(torch.randint(0, s - 30, (1,), generator=gen)) for s in grid.shape]
        lab[a[0]:a[0] + 25, a[1]:a[1] + 20, a[2]:a[2] + 30] = c
    probs = F.avg_pool3d(F.one_hot(lab, args.classes).permute(3, 0, 1, 2)[None].float(), 3, 1, 1).to(args.device)
    print(f"input grid {source.shape}, network grid {grid.shape}, {args.classes} classes, device {args.device}, "
          f"threads {torch.get_num_threads()}")
    t0 = time.perf_counter()
    aligned = back_resampling.labels_on_source(probs, grid, source, args.classes)
    t_aligned = time.perf_counter() - t0
    with mock.patch.object(back_resampling, "_axis_map", lambda matrix: None):
        t0 = time.perf_counter()
        general = back_resampling.labels_on_source(probs, grid, source, args.classes)
        t_general = time.perf_counter() - t0
    print(f"general path  {t_general:6.2f} s\nper-axis path {t_aligned:6.2f} s   ({t_general / t_aligned:.2f}x)")
    print(f"labels identical: {bool(np.array_equal(aligned, general))}")
    return 0 if np.array_equal(aligned, general) else 1


if __name__ == "__main__":
    raise SystemExit(main())
