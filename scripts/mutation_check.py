#!/usr/bin/env python3
"""One-line mutations of the core, each run against the tests meant to catch it.

Each mutation replaces one exact piece of source text (which must occur exactly once), runs the
named test files with pytest, and restores the file whatever happens. A mutation is *killed* when
pytest fails; a *survivor* is a test gap. The file is restored from memory, so an interrupted run
leaves nothing behind except in the one file being mutated: `git diff` shows it.

Usage: ``python scripts/mutation_check.py [--only NAME ...] [--list]``. Prints one line per mutation
and a summary table; exits 1 if any mutation survives.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = "LargeKernelSeg/lkseg/"


@dataclass
class Mutation:
    name: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]


M = Mutation
MUTATIONS = [
    # preprocessing
    M("orientation: first axis flipped in and out", PKG + "io/orientation.py",
      "signs = tuple(1 if cos[a, best[a]] >= 0 else -1 for a in range(3))",
      "signs = tuple((1 if cos[a, best[a]] >= 0 else -1) * (-1 if a == 0 else 1) for a in range(3))",
      ("Testing/inference/test_orientation.py",)),
    M("network grid: X and Y axes swapped", PKG + "preprocessing/spatial.py",
      "perm, signs = orientation_axes(direction, orientation) if orientation else ((0, 1, 2), (1, 1, 1))",
      "perm, signs = orientation_axes(direction, orientation) if orientation else ((0, 1, 2), (1, 1, 1))\n"
      "    perm, signs = (perm[1], perm[0], perm[2]), (signs[1], signs[0], signs[2])",
      ("Testing/inference/test_orientation.py",)),
    M("resampling: source index off by one voxel", PKG + "preprocessing/spatial.py",
      "to_src = np.linalg.inv(source.matrix) @ dest.matrix  # dest index -> source index",
      "to_src = np.linalg.inv(source.matrix) @ dest.matrix\n    to_src[0, 3] += 1.0",
      ("Testing/inference/test_orientation.py", "Testing/inference/test_geometry.py")),
    M("intensity window: wrong width", PKG + "preprocessing/intensity.py",
      "x = (x - a_min) / (a_max - a_min) * (b_max - b_min) + b_min",
      "x = (x - a_min) / (a_max - a_min + 1.0) * (b_max - b_min) + b_min",
      ("Testing/inference/test_inference.py", "Testing/inference/test_geometry.py")),
    M("foreground crop: tensor cropped, grid not", PKG + "preprocessing/pipeline.py",
      "            grid = crop_grid(grid, box)", "            pass",
      ("Testing/inference/test_inference.py",)),
    # sliding window
    M("sliding window: last window does not reach the end", PKG + "inference/sliding_window.py",
      "    if starts[-1] != size - roi:\n        starts.append(size - roi)", "    pass",
      ("Testing/inference/test_inference.py",)),
    # back-resampling
    M("back-resampling: voxels outside a cropped grid keep a label", PKG + "inference/back_resampling.py",
      "            lab[outside] = 0", "            pass",
      ("Testing/inference/test_inference.py",)),
    M("back-resampling: interpolates the uniform cells instead of the mixed", PKG + "inference/back_resampling.py",
      "            mixed = ~uniform_flat[cell]", "            mixed = uniform_flat[cell]",
      ("Testing/inference/test_geometry.py", "Testing/inference/test_orientation.py")),
    M("back-resampling: slab k offset lost", PKG + "inference/back_resampling.py",
      "    m[2, 3] = k0", "    m[2, 3] = 0",
      ("Testing/inference/test_geometry.py",)),
    # labels
    M("labels: same_as ignores names", PKG + "checkpoint/labels.py",
      "        return mine == theirs", "        return set(mine) == set(theirs)",
      ("Testing/checkpoint/test_labels.py",)),
    M("labels: num_classes forgets background", PKG + "checkpoint/labels.py",
      "return max((lab.value for lab in self.labels), default=0) + 1",
      "return max((lab.value for lab in self.labels), default=0)",
      ("Testing/checkpoint/test_labels.py", "Testing/checkpoint/test_checkpoint.py")),
    # export
    M("seg.nrrd: segment label values are positions, not values", PKG + "io/export.py",
      'f"Segment{n}_LabelValue": str(int(label.value)),', 'f"Segment{n}_LabelValue": str(n + 1),',
      ("Testing/io/test_export.py",)),
    M("organ volumes: mm3 taken for mL", PKG + "io/export.py",
      "voxel_ml = float(np.prod(labels.spacing)) / 1000.0", "voxel_ml = float(np.prod(labels.spacing))",
      ("Testing/io/test_export.py", "Testing/cli/test_cli_demo.py")),
    # checkpoint
    M("checkpoint: shape mismatches not reported", PKG + "checkpoint/native.py",
      "    mismatched = [k for k in expected if k in found and expected[k] != found[k]]",
      "    mismatched = []",
      ("Testing/checkpoint/test_checkpoint.py",)),
    # (strict=False in load_state_dict is no mutation worth listing: the shapes and keys are compared first)
    M("checkpoint: missing weights not reported", PKG + "checkpoint/native.py",
      "    missing = [k for k in expected if k not in found]", "    missing = []",
      ("Testing/checkpoint/test_checkpoint.py",)),
    # training
    M("training: loss sign flipped (gradient ascent)", PKG + "training/run.py",
      "            loss = deep_supervision_loss(self.loss_fn, float_outputs(outputs), y)",
      "            loss = -deep_supervision_loss(self.loss_fn, float_outputs(outputs), y)",
      ("Testing/training/test_training_oracles.py",)),
    M("training: best checkpoint keeps the worst score", PKG + "training/run.py",
      "if score > self.best_dice or not self.best_path.is_file():",
      "if score < self.best_dice or not self.best_path.is_file():",
      ("Testing/training/test_training_oracles.py",)),
    M("training: resume loses the LR schedule", PKG + "training/run.py",
      '        self.scheduler.load_state_dict(state["scheduler"])', "        pass",
      ("Testing/training/test_training_oracles.py",)),
    M("training: resume loses the AdamW moments", PKG + "training/run.py",
      '        self.optimizer.load_state_dict(state["optimizer"])', "        pass",
      ("Testing/training/test_training_oracles.py",)),
    M("training: resume loses the RNG state", PKG + "training/run.py",
      '        set_rng_state(state.get("rng", {}))', "        pass",
      ("Testing/training/test_training_oracles.py",)),
    # worker
    M("worker: model cache ignores a rewritten checkpoint", PKG + "service/worker.py",
      "        key = (str(path), st.st_mtime_ns, st.st_size, device)", "        key = (str(path), device)",
      ("Testing/service/test_worker.py",)),
    M("worker: cancel never reaches the running request", PKG + "service/worker.py",
      "            if event is not None:\n                event.set()", "            pass",
      ("Testing/service/test_worker.py",)),
    # jobs
    M("jobs: cancel does not end the process tree", PKG + "jobs/control.py",
      "    survivors = end_tree(processes, grace_s)", "    survivors = []",
      ("Testing/jobs/test_jobs.py",)),
    M("jobs: a silently dead job still reads as running", PKG + "jobs/folder.py",
      "    if state in ACTIVE and not any(alive(i) for i in idents):", "    if False:",
      ("Testing/jobs/test_jobs.py",)),
    # dataset and reading
    M("dataset: re-export overwrites the earlier labels", PKG + "dataset/local.py",
      "                kept = _keep_in_history(lab_path, case_id)", "                kept = None",
      ("Testing/dataset/test_dataset.py",)),
    M("DICOM: a folder with two series reads the smaller", PKG + "io/imageio.py",
      "        if len(files) > len(best):", "        if not best or len(files) < len(best):",
      ("Testing/io/test_imageio.py",)),
    # nothing lost, nothing silent
    M("checkpoint: stored digest not compared", PKG + "checkpoint/native.py",
      "if expected is not None and tensors_digest(state) != expected:", "if False:",
      ("Testing/checkpoint/test_hostile_checkpoints.py",)),
    M("card: a labels string opened as a file", PKG + "checkpoint/card.py",
      "        return builtin_table(data)", "        from lkseg.checkpoint.labels import get_table\n        return get_table(data)",
      ("Testing/checkpoint/test_hostile_checkpoints.py",)),
    M("outputs: an output that is an input is written anyway", PKG + "utils/overwrite.py",
      "            if _same(out, src):", "            if False:",
      ("Testing/cli/test_cli_bad_input.py",)),
    M("images: gzip stream not read to the end", PKG + "io/integrity.py",
      "        length = _gzip_length(path)", "        length = 10**12",
      ("Testing/io/test_image_integrity.py",)),
    M("DICOM: a missing slice passes", PKG + "io/integrity.py", "    if gaps.size:", "    if False:",
      ("Testing/io/test_image_integrity.py",)),
    M("images: NaN voxels passed to the network", PKG + "inference/segmenter.py",
      "        image, fixed = finite_voxels(image)", "        fixed = None",
      ("Testing/io/test_image_integrity.py",)),
    M("training: a checkpoint inside --out is trained from", PKG + "training/ownership.py",
      "        if out == src.parent or out in src.parents:", "        if False:",
      ("Testing/training/test_out_folder.py",)),
    M("jobs: the trainer outlives its supervisor", PKG + "training/supervision.py",
      "            if not self._alive():", "            if False:",
      ("Testing/jobs/test_job_processes.py",)),
    M("worker: a silent worker is waited for forever", PKG + "service/client.py",
      "            if now - last_heard > self.heartbeat_timeout_s:", "            if False:",
      ("Testing/service/test_worker_deadlines.py",)),
    M("dataset: check reads entries outside the dataset", PKG + "dataset/local.py",
      "                       if not p.is_relative_to(self.root.resolve())]", "                       if False]",
      ("Testing/dataset/test_dataset.py",)),
    M("Slicer: reference geometry set before the parent transform", "LargeKernelSeg/LargeKernelSegLib/mrml.py",
      "    segmentationNode.SetAndObserveTransformNodeID(volumeNode.GetTransformNodeID())\n"
      "    segmentationNode.SetReferenceImageGeometryParameterFromVolumeNode(volumeNode)",
      "    segmentationNode.SetReferenceImageGeometryParameterFromVolumeNode(volumeNode)\n"
      "    segmentationNode.SetAndObserveTransformNodeID(volumeNode.GetTransformNodeID())",
      ("Testing/slicer_module/test_slicer_mrml.py",)),
    M("Slicer: reference geometry not set", "LargeKernelSeg/LargeKernelSegLib/mrml.py",
      "    segmentationNode.SetReferenceImageGeometryParameterFromVolumeNode(volumeNode)\n", "",
      ("Testing/slicer_module/test_slicer_mrml.py",)),
]


def run(mutation: Mutation) -> tuple[bool, float, str]:
    path = ROOT / mutation.file
    original = path.read_text(encoding="utf-8")
    count = original.count(mutation.old)
    if count != 1:
        return False, 0.0, f"source text found {count} times (the mutation list is out of date)"
    t0 = time.perf_counter()
    try:
        path.write_text(original.replace(mutation.old, mutation.new), encoding="utf-8")
        proc = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *mutation.tests],
                              cwd=ROOT, capture_output=True, text=True, timeout=900)
    finally:
        path.write_text(original, encoding="utf-8")
    failed = [ln for ln in proc.stdout.splitlines() if ln.startswith("FAILED")]
    return proc.returncode != 0, time.perf_counter() - t0, (failed[0][7:] if failed else proc.stdout.strip()[-200:])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", nargs="+", help="run only mutations whose name contains one of these words")
    p.add_argument("--list", action="store_true", help="list the mutations and exit")
    args = p.parse_args()
    chosen = [m for m in MUTATIONS if not args.only or any(w in m.name for w in args.only)]
    if args.list:
        for m in chosen:
            print(f"{m.name}  [{m.file}]  -> {', '.join(m.tests)}")
        return 0
    survivors = 0
    print(f"{'mutation':<66} {'result':<8} {'s':>5}  killed by")
    for m in chosen:
        killed, seconds, detail = run(m)
        survivors += not killed
        print(f"{m.name:<66} {'killed' if killed else 'SURVIVED':<8} {seconds:5.0f}  {detail}", flush=True)
    print(f"\n{len(chosen) - survivors} of {len(chosen)} mutations killed")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
