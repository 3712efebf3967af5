#!/usr/bin/env python3
"""Accuracy benchmark on real manual labels: do our large-kernel networks beat a plain baseline
at equal cost?

On the CHAOS T2-SPIR MR cases (manual liver, kidney and spleen labels; see ``chaos_mr.py``), each
candidate is trained from scratch with this project's own training code (``lkseg.training``)
under the same wall-clock budget on this machine, then segments the cases it never saw through
the real inference path (``lkseg.inference.Segmenter``, on the input voxels), scored with
``lkseg.evaluation`` (MONAI's Dice and HD95).

* Split: the fixed one in ``chaos_mr.py`` (12 train: ids 1-22, 3 validation: ids 31, 32, 33), or
  ``--folds K``: K-fold cross-validation over all 15 (fold f validates on every K-th case from f).
* No selection on the scored cases: the score is of the network at the end of its budget
  (``last.safetensors``), not of the best checkpoint by validation Dice.
* Candidates (``--candidates``): the registry's small configurations of 3D UX-Net, MedNeXt-S and
  MONAI's SegResNet (a baseline a user would pick instead), same crops, augmentation, loss,
  optimiser, learning rate and schedule.

    python scripts/benchmark_accuracy.py [--minutes 10] [--folds 0] [--data DIR] [--out DIR]

Writes ``accuracy_<split>.json`` and ``accuracy_<split>.md`` (the tables) to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

import chaos_mr as chaos


def folds(k: int) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """(train, validation) case ids: the fixed split for k == 0, else k interleaved folds."""
    if k == 0:
        return [(chaos.TRAIN, chaos.VALIDATION)]
    if not 2 <= k <= len(chaos.CASES):
        raise SystemExit(f"--folds must be 0 (the fixed split) or 2-{len(chaos.CASES)}")
    out = []
    for f in range(k):
        val = chaos.CASES[f::k]
        out.append((tuple(c for c in chaos.CASES if c not in val), val))
    return out


def markdown(rows: list[dict], budget: str, split: str) -> str:
    organs = list(chaos.ORGANS.values())
    head = ("| network | params | budget | trained (s) | steps | " + " | ".join(f"{o} Dice / HD95" for o in organs)
            + " | mean Dice |")
    lines = [f"Split: {split}. Budget per network: {budget} of training on this machine's CPU.", "",
             head, "|" + "---|" * (6 + len(organs))]
    for r in rows:
        cells = [f"{r['organs'][o]['dice']:.3f} / {r['organs'][o]['hd95_mm']:.1f} mm"
                 if r["organs"][o]["hd95_mm"] is not None else f"{r['organs'][o]['dice']:.3f} / -" for o in organs]
        budget_cell = r.get("budget") or f"{r['minutes']:g} min"
        lines.append(f"| {r['network']} | {r['parameters'] / 1e6:.2f}M | {budget_cell} | "
                     f"{r.get('train_seconds', '-')} | {r['steps']} | "
                     + " | ".join(cells) + f" | **{r['mean_dice']:.3f}** |")
        if "largest_component" in r:
            lc = r["largest_component"]
            cells = [f"{lc['organs'][o]['dice']:.3f} / {lc['organs'][o]['hd95_mm']:.1f} mm"
                     if lc["organs"][o]["hd95_mm"] is not None else f"{lc['organs'][o]['dice']:.3f} / -"
                     for o in organs]
            lines.append(f"| {r['network']} + largest piece | | | | | " + " | ".join(cells)
                         + f" | **{lc['mean_dice']:.3f}** |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    """Per-case Dice per organ, one box per network (and its largest-piece variant), as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    organs = list(chaos.ORGANS.values())
    variants = [(r["network"], r["per_case"]) for r in rows]
    variants += [(f"{r['network']}+lcc", r["largest_component"]["per_case"]) for r in rows if "largest_component" in r]
    fig, axes = plt.subplots(1, len(organs), figsize=(3.2 * len(organs), 3.8), sharey=True)
    for ax, organ in zip(axes, organs):
        data = [[s["dice"] or 0.0 for ss in per_case.values() for s in ss if s["name"] == organ] for _, per_case in variants]
        ax.boxplot(data, showmeans=True)
        ax.set_xticks(range(1, len(variants) + 1), [v for v, _ in variants], rotation=35, ha="right", fontsize=8)
        ax.set_title(organ)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("Dice (per case)")
    axes[0].set_ylim(0, 1.0)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(out: Path, tag: str, text: str, payload: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"accuracy_{tag}.md").write_text(text)
    (out / f"accuracy_{tag}.json").write_text(json.dumps(payload, indent=1))
    plot(payload["rows"], out / f"accuracy_{tag}.png")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=chaos.DATA, help="CHAOS folder (image_<n>/label_<n>.nii.gz)")
    p.add_argument("--minutes", type=float, default=10.0, help="training budget per network (and fold)")
    p.add_argument("--steps", type=int, help="a fixed number of steps instead of a time budget")
    p.add_argument("--folds", type=int, default=0, help="0: the fixed 12/3 split; K: K-fold cross-validation")
    p.add_argument("--candidates", nargs="+", default=list(chaos.CANDIDATES), choices=list(chaos.CANDIDATES))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rescore", action="store_true", help="score the networks an earlier run left in --work")
    p.add_argument("--resume", action="store_true", help="with --work: keep the folds an interrupted run finished "
                   "(their network has --steps steps), continue the interrupted one, train the others")
    p.add_argument("--fold", type=int, help="train and score only this fold (parallel runs; no tables: "
                   "--rescore with every fold's network in --work writes them)")
    p.add_argument("--work", type=Path, help="keep datasets and jobs here (default: a temp folder)")
    p.add_argument("--out", type=Path, default=chaos.REPO / "docs" / "accuracy", help="where the tables go")
    p.add_argument("--replot", type=Path, metavar="JSON", help="only write the table and plot of an earlier run's JSON")
    args = p.parse_args(argv)
    if args.replot:
        payload = json.loads(args.replot.read_text())
        text = markdown(payload["rows"], payload.get("budget") or f"{payload['minutes']:g} min", payload["split"])
        print(text)
        write_outputs(args.out, args.replot.stem.removeprefix("accuracy_"), text, payload)
        return 0
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if (args.rescore or args.resume) and args.work is None:
        sys.exit("--rescore and --resume need the --work folder of the run that trained the networks")
    if args.resume and not args.steps:
        sys.exit("--resume needs --steps (a fold is finished when its network has that many)")
    work = args.work or Path(tempfile.mkdtemp(prefix="lkseg-accuracy-"))
    work.mkdir(parents=True, exist_ok=True)
    split = "fixed 12/3 split (validation: CHAOS ids 31, 32, 33)" if args.folds == 0 else f"{args.folds}-fold CV"
    budget = f"{args.steps} steps" if args.steps else f"{args.minutes:g} min"
    tag = "split" if args.folds == 0 else f"cv{args.folds}"
    if (work / "dataset").exists() and not args.resume:
        shutil.rmtree(work / "dataset")
    if (work / "dataset").exists():  # --resume: the dataset the interrupted run trained on
        from lkseg.dataset.local import LocalDataset

        ds = LocalDataset(work / "dataset")
    else:
        ds = chaos.build_dataset(args.data, work / "dataset")

    rows = []
    for name in args.candidates:
        per_fold = []
        for f, (train_ids, val_ids) in enumerate(folds(args.folds)):
            if args.fold is not None and f != args.fold:
                continue
            last = work / f"fold{f}" / f"job_{name}" / "checkpoints" / "last.safetensors"
            if args.rescore or (args.resume and last.is_file() and chaos.trained_facts(last)["steps"] == args.steps):
                got = chaos.trained_facts(last)  # trained by an earlier run with the same --work
            else:
                last, got = chaos.train_candidate(name, ds, train_ids, val_ids, work / f"fold{f}", args.minutes,
                                                  args.threads, args.steps, resume=args.resume)
            result = chaos.score_checkpoint(last, args.data, val_ids, largest_component=False)
            # post-processing decided on these scores, nnU-Net's way: only the largest piece of each organ
            result["largest_component"] = chaos.score_checkpoint(last, args.data, val_ids, largest_component=True)
            per_fold.append((result, got))
            print(f"{name} fold {f}: {got['steps']} steps in {got['train_seconds']:.0f} s, mean Dice "
                  f"{chaos.mean_dice(result):.3f} on {list(val_ids)}", flush=True)
        if args.fold is not None:
            continue
        scores = {cid: s for result, _ in per_fold for cid, s in result["scores"].items()}
        merged = {"scores": scores}
        lcc = {"scores": {cid: s for result, _ in per_fold for cid, s in result["largest_component"]["scores"].items()}}
        rows.append({"network": name, "parameters": per_fold[0][1]["parameters"], "budget": budget,
                     "minutes": None if args.steps else args.minutes,
                     "steps": "/".join(str(g["steps"]) for _, g in per_fold),
                     "train_seconds": "/".join(f"{g['train_seconds']:.0f}" for _, g in per_fold),
                     "organs": chaos.organ_means(merged), "mean_dice": chaos.mean_dice(merged),
                     "per_case": {cid: [s.as_dict() for s in ss] for cid, ss in scores.items()},
                     "largest_component": {"organs": chaos.organ_means(lcc), "mean_dice": chaos.mean_dice(lcc),
                                           "per_case": {cid: [s.as_dict() for s in ss]
                                                        for cid, ss in lcc["scores"].items()}},
                     "seconds_per_case": per_fold[0][0]["seconds_per_case"]})
    if args.fold is not None:
        return 0
    text = markdown(rows, budget, split)
    print(text)
    write_outputs(args.out, tag, text, {
        "split": split, "folds": [[list(t), list(v)] for t, v in folds(args.folds)], "budget": budget,
        "minutes": None if args.steps else args.minutes,
        "spacing_mm": chaos.SPACING, "roi": chaos.ROI, "intensity": chaos.INTENSITY, "seed": chaos.SEED, "lr": chaos.LR,
        "threads": args.threads, "rows": rows})
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
