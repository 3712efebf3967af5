"""``lkseg finetune``: fine-tune a checkpoint (or train an architecture from scratch) on a local
dataset, in the foreground with a progress bar or as a background job (``--background``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lkseg.errors import LkSegError


def register(sub: argparse._SubParsersAction) -> None:
    from lkseg.training.config import add_training_arguments

    p = sub.add_parser("finetune", help="fine-tune a checkpoint on a local dataset (or train from scratch)",
                       description="Fine-tune --checkpoint (or train --architecture from scratch with --labels) "
                       "on a local dataset. Rerunning with the same --out resumes the run.")
    add_training_arguments(p, require_source=True)
    p.add_argument("--background", action="store_true",
                   help="run as a background job (watch it with `lkseg jobs status OUT`)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lkseg.training.config import config_from_args
    from lkseg.training.train import train

    config = config_from_args(args)  # validates the options before anything starts
    if args.background:
        return _background(args)
    from tqdm import tqdm

    bar = tqdm(total=config.steps or None, desc="fine-tuning", unit="step", file=sys.stderr,
               disable=not sys.stderr.isatty())

    piped = {"last": 0.0}

    def progress(rec: dict) -> None:
        if not sys.stderr.isatty():  # a log or a pipe: a line every 10 s and at each validation
            import time

            if rec.get("val_dice") is not None or time.monotonic() - piped["last"] >= 10.0:
                piped["last"] = time.monotonic()
                eta = f", about {rec['eta_s']:.0f} s left" if rec.get("eta_s") is not None else ""
                val = f", validation Dice {rec['val_dice']:.3f}" if rec.get("val_dice") is not None else ""
                loss = f"{rec['loss']:.4f}" if rec.get("loss") is not None else "-"
                print(f"fine-tuning: step {rec.get('step')}/{rec.get('total_steps', '?')}, loss {loss}{val}{eta}",
                      file=sys.stderr, flush=True)
        total = rec.get("total_steps")
        if total and total < 10**9 and bar.total != total:
            bar.total = total
        if isinstance(rec.get("step"), int) and rec["step"] > bar.n:
            bar.update(rec["step"] - bar.n)
        post = {"loss": f"{rec['loss']:.4f}" if rec.get("loss") is not None else "-"}
        if rec.get("val_dice") is not None:
            post["val_dice"] = f"{rec['val_dice']:.3f}"
        bar.set_postfix(post, refresh=False)

    try:
        best = train(config, progress=progress)
    finally:
        bar.close()
    _print_result(best)
    return 0


def _print_result(best: Path) -> None:
    from lkseg.checkpoint.native import read_card

    card = read_card(best)
    metrics = card.provenance.metrics
    print(f"best checkpoint: {best}")
    print(f"  step {metrics.get('step')}, validation mean Dice {metrics.get('val_dice_mean')}")
    for name, dice in (metrics.get("val_dice") or {}).items():
        print(f"    {name:<28} {dice if dice is not None else '-'}")
    if card.provenance.parent_sha256:
        print(f"  parent checkpoint sha256 {card.provenance.parent_sha256}")
    last = best.parent / "last.safetensors"
    if last.is_file():
        print(f"last checkpoint: {last}")


def training_argv(args: argparse.Namespace) -> list[str]:
    """The ``python -m lkseg.training`` arguments equivalent to the parsed options."""
    from lkseg.training.config import build_parser

    argv: list[str] = []
    parser = build_parser()
    for action in parser._actions:
        if not action.option_strings or action.dest == "help":
            continue
        value = getattr(args, action.dest, None)
        if value is None or value == action.default:
            continue
        flag = action.option_strings[-1] if action.option_strings[-1].startswith("--") else action.option_strings[0]
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            argv.append(flag)
        elif isinstance(value, (list, tuple)):
            argv += [flag, *[str(v) for v in value]]
        elif isinstance(value, dict):
            import json

            argv += [flag, json.dumps(value)]
        else:
            argv += [flag, str(value)]
    return argv


def _background(args: argparse.Namespace) -> int:
    try:
        from lkseg import jobs
    except ImportError:
        raise LkSegError("background jobs are not available in this installation (lkseg.jobs is missing); "
                         "run without --background") from None
    job = jobs.start_job(training_argv(args), out=args.out)
    print(f"started background job {job}")
    print(f"watch it with: lkseg jobs status {job}")
    return 0
