"""``lkseg import``: turn official ``.pth``/``.pt`` weights plus a model card into a native checkpoint.

The weights are read with ``torch.load(weights_only=True)``: files holding arbitrary Python
objects are refused, never executed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lkseg.errors import LkSegError
from lkseg.utils.argtypes import positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import", help="convert official .pth/.pt weights plus a model card into a native .safetensors checkpoint",
        description="Convert official weights (raw state dict, or one under state_dict/model/network_weights/"
                    "model_state_dict/net) into a native checkpoint. Describe the model with --card CARD.json "
                    "(a model card: architecture, hyperparameters, in_channels, labels, preprocessing, inference) "
                    "or with --architecture and --labels.")
    p.add_argument("weights", type=Path, help="official weights file (.pth, .pt, .safetensors)")
    p.add_argument("--card", type=Path, help="model card JSON; 'labels' may name a built-in table (btcv, amos, flare21)")
    p.add_argument("--architecture", help="registered architecture (instead of --card), e.g. uxnet")
    p.add_argument("--labels", help="label table (with --architecture): btcv, amos, flare21 or a JSON file")
    p.add_argument("--in-channels", type=positive_int, default=1, help="input channels (with --architecture; default 1)")
    p.add_argument("--hp", action="append", default=[], metavar="KEY=VALUE",
                   help="hyper-parameter (with --architecture; repeatable; VALUE as JSON or plain text), "
                        "e.g. --hp size=M --hp kernel_size=5")
    p.add_argument("-o", "--output", type=Path, required=True, help="native checkpoint to write (.safetensors)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")
    p.set_defaults(func=run)


def _card_from_args(args: argparse.Namespace):
    from lkseg.checkpoint.card import ModelCard

    if args.card is not None:
        if args.architecture or args.labels or args.hp:
            raise LkSegError("give either --card or --architecture/--labels, not both")
        try:
            data = json.loads(args.card.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise LkSegError(f"model card {args.card} does not exist") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise LkSegError(f"model card {args.card} is not readable JSON ({exc})") from None
        try:
            return ModelCard.from_dict(data)
        except LkSegError as exc:
            raise LkSegError(f"model card {args.card}: {exc}") from None
    if not (args.architecture and args.labels):
        raise LkSegError("describe the model: --card CARD.json, or --architecture NAME and --labels TABLE")
    from lkseg.checkpoint.labels import get_table

    return ModelCard(architecture=args.architecture, hyperparameters=_hyperparameters(args.hp),
                     in_channels=args.in_channels,
                     labels=get_table(args.labels))


def _hyperparameters(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise LkSegError(f"--hp {item!r}: expected KEY=VALUE, e.g. --hp kernel_size=5")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def run(args: argparse.Namespace) -> int:
    from lkseg.checkpoint.native import read_card
    from lkseg.checkpoint.official import import_official

    if args.output.suffix.lower() != ".safetensors":
        raise LkSegError(f"output {args.output} must end in .safetensors")
    if args.output.exists() and not args.force:
        raise LkSegError(f"{args.output} already exists; pass --force to overwrite it")
    card = _card_from_args(args)
    out = import_official(args.weights, card, args.output, overwrite=args.force)
    card = read_card(out)
    print(f"wrote {out}: {card.architecture}, {len(card.labels)} labels ({card.labels.name or 'custom'})")
    print(card.provenance.notes)
    return 0
