#!/usr/bin/env python3
"""The correction loop, proven on real labels: does each corrected case make the model better on
cases it never saw, without forgetting the ones it started from?

On the CHAOS T2-SPIR MR cases (``chaos_mr.py``), through the product's own command line, run as
separate processes exactly as a user would:

1. ``lkseg dataset add`` the first ``--start`` training cases; ``lkseg finetune --architecture``
   trains a small network on them from scratch (``--base-minutes``).
2. Each round: the current model segments the next training case (its Dice before correction is
   how much the user would have had to fix); the case goes into the dataset with its manual labels
   (``lkseg dataset add``, the correction); ``lkseg finetune --checkpoint`` continues from the
   current model on the whole dataset for ``--round-minutes`` (``--val-fraction 0``: the newest
   correction is trained on). Its final checkpoint (``last.safetensors``) is the next model.
3. After each round, the model is scored on the fixed validation cases (ids 31, 32, 33; never
   added, never used for selection) and on the starting cases (forgetting).

Prints the curve and writes ``finetune_loop.json``/``.md``/``.png`` to ``--out``.

    python scripts/benchmark_finetune_loop.py [--start 3] [--rounds 4] [--base-minutes 6] [--round-minutes 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import chaos_mr as chaos

SEED = 7


def lkseg(*args: str) -> None:
    """Run the real ``lkseg`` command line in its own process; stop with its output if it fails."""
    cmd = [sys.executable, "-m", "lkseg", *args]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")


def common(args: argparse.Namespace, minutes: float) -> list[str]:
    return ["--minutes", str(minutes), "--device", "cpu", "--val-fraction", "0", "--val-every", "1000000",
            "--seed", str(SEED), "--lr", str(args.lr), "--num-threads", str(args.threads)]


def score(ckpt: Path, data: Path, cases) -> float:
    return chaos.mean_dice(chaos.score_checkpoint(ckpt, data, cases))


def plot(rounds: list[dict], path: Path, control: list[dict] | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = [r["cases_in_dataset"] for r in rounds]
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=110)
    ax.plot(n, [r["validation_dice"] for r in rounds], "o-", label="validation cases (never trained on)")
    ax.plot(n, [r["start_cases_dice"] for r in rounds], "s--", label="starting cases (forgetting)")
    before = [(r["cases_in_dataset"], r["new_case_dice_before"]) for r in rounds if r["new_case_dice_before"] is not None]
    if before:
        ax.plot(*zip(*before), "x:", label="next case before correction")
    if control:  # the same fine-tuning minutes, no new cases: what the extra training alone gives
        ax.plot(n[:len(control)], [r["validation_dice"] for r in control], "^-.", color="grey",
                label="validation, same minutes, no new cases")
    ax.set_xlabel("round (corrected cases in the dataset)")
    ax.set_ylabel("mean Dice (4 organs)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=chaos.DATA)
    p.add_argument("--architecture", default="segresnet", help="registry architecture (small config)")
    p.add_argument("--start", type=int, default=3, help="training cases the first model is trained on")
    p.add_argument("--rounds", type=int, default=4, help="corrected cases added, one per round")
    p.add_argument("--base-minutes", type=float, default=6.0)
    p.add_argument("--round-minutes", type=float, default=3.0)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work", type=Path)
    p.add_argument("--out", type=Path, default=chaos.REPO / "docs" / "accuracy")
    p.add_argument("--control", action="store_true", help="the control: each round fine-tunes as long on the "
                   "starting cases only (no case added), to tell new cases from extra training")
    p.add_argument("--base", type=Path, help="start from this first model instead of training one (--start cases)")
    p.add_argument("--replot", action="store_true", help="only redraw --out's finetune_loop.png (with the control "
                   "curve when finetune_loop_control.json is there)")
    args = p.parse_args(argv)
    name = "finetune_loop_control" if args.control else "finetune_loop"
    if args.replot:
        control = args.out / "finetune_loop_control.json"
        plot(json.loads((args.out / "finetune_loop.json").read_text())["rounds"], args.out / "finetune_loop.png",
             json.loads(control.read_text())["rounds"] if control.is_file() else None)
        return 0
    if args.start + args.rounds > len(chaos.TRAIN):
        sys.exit(f"--start + --rounds must be at most {len(chaos.TRAIN)} (the training cases)")
    work = args.work or Path(tempfile.mkdtemp(prefix="lkseg-loop-"))
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    ds = work / "dataset"
    table = work / "mr_table.json"
    table.write_text(json.dumps({"name": chaos.mr_table().name, "labels": chaos.mr_table().to_list()}))
    start, queue = chaos.TRAIN[:args.start], chaos.TRAIN[args.start:args.start + args.rounds]

    def add(n: int) -> None:
        lkseg("dataset", "add", str(args.data / f"image_{n}.nii.gz"), str(args.data / f"label_{n}.nii.gz"),
              "--dataset", str(ds), "--labels", str(table), "--case-id", chaos.case_id(n))

    for n in start:
        add(n)
    model = work / "round0" / "checkpoints" / "last.safetensors"
    if args.base:  # the first model of an earlier run (the control starts where the loop started)
        model.parent.mkdir(parents=True)
        shutil.copyfile(args.base, model)
    else:
        lkseg("finetune", "--dataset", str(ds), "--out", str(work / "round0"), "--architecture", args.architecture,
              "--model-config", "small", "--labels", str(table), "--spacing", *map(str, chaos.SPACING),
              "--roi", *map(str, chaos.ROI), "--intensity", json.dumps(chaos.INTENSITY),
              *common(args, args.base_minutes))
    rounds = []
    for r in range(args.rounds + 1):
        row = {"round": r, "cases_in_dataset": args.start + r, "checkpoint": str(model),
               "validation_dice": score(model, args.data, chaos.VALIDATION),
               "start_cases_dice": score(model, args.data, start), "new_case": None, "new_case_dice_before": None}
        if r < args.rounds and not args.control:
            n = queue[r]
            row["new_case"], row["new_case_dice_before"] = n, score(model, args.data, [n])
        rounds.append(row)
        if args.control:
            row["cases_in_dataset"] = args.start
        print(f"round {r}: {row['cases_in_dataset']} cases, validation {row['validation_dice']:.3f}, starting cases "
              f"{row['start_cases_dice']:.3f}" + (f", next case {n} before correction {row['new_case_dice_before']:.3f}"
                                                  if row["new_case"] else ""), flush=True)
        if r == args.rounds:
            break
        if not args.control:
            add(n)
        job = work / f"round{r + 1}"
        lkseg("finetune", "--dataset", str(ds), "--out", str(job), "--checkpoint", str(model),
              *common(args, args.round_minutes))
        model = job / "checkpoints" / "last.safetensors"

    first = f"{args.base}" if args.base else f"{args.base_minutes:g} min"
    each = "adds no case (control) and" if args.control else "adds one corrected case and"
    lines = [f"Architecture {args.architecture} (small), first model: {first} on CHAOS ids "
             f"{list(start)}; each round {each} fine-tunes {args.round_minutes:g} min (lr "
             f"{args.lr:g}). Validation: ids {list(chaos.VALIDATION)}.", "",
             "| round | cases | validation mean Dice | starting cases mean Dice | next case | its Dice before correction |",
             "|---|---|---|---|---|---|"]
    for row in rounds:
        nb = f"{row['new_case_dice_before']:.3f}" if row["new_case_dice_before"] is not None else "-"
        lines.append(f"| {row['round']} | {row['cases_in_dataset']} | {row['validation_dice']:.3f} | "
                     f"{row['start_cases_dice']:.3f} | {row['new_case'] or '-'} | {nb} |")
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.md").write_text(text)
    (args.out / f"{name}.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                                       "rounds": rounds}, indent=1))
    if not args.control:
        plot(rounds, args.out / f"{name}.png")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
