"""``lkseg info CKPT``: describe a checkpoint (model card, file size, sha256, parameter count)."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="describe a checkpoint: architecture, labels, preprocessing, provenance")
    p.add_argument("checkpoint", type=Path, help="native checkpoint (.safetensors)")
    p.add_argument("--json", action="store_true", help="print the raw model card as JSON")
    p.add_argument("--check", action="store_true",
                   help="also build the network and load the weights strictly (slower; proves the file works)")
    p.set_defaults(func=run)


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def _parameter_count(card) -> int | None:
    """Parameters of the card's network, built on the meta device (no memory, no weights read)."""
    import torch

    from lkseg.errors import LkSegError

    try:
        from lkseg.checkpoint.native import build_from_card
        from lkseg.models.registry import count_parameters

        with torch.device("meta"):
            return count_parameters(build_from_card(card))
    except (LkSegError, ImportError, RuntimeError, NotImplementedError):
        return None


def _architecture_lines(card) -> list[str]:
    """What the architecture module adds about this card (its ``card_lines(hyperparameters)``, if any),
    e.g. DeformUX-Net's offset layout."""
    import sys

    from lkseg.models.registry import get_spec

    try:
        spec = get_spec(card.architecture)
    except KeyError:
        return []
    describe = getattr(sys.modules.get(spec.constructor.__module__), "card_lines", None)
    return list(describe(card.hyperparameters)) if callable(describe) else []


def run(args: argparse.Namespace) -> int:
    from lkseg.checkpoint.native import (
        DIGEST_KEY,
        check_fits,
        file_sha256,
        load_checkpoint,
        tensor_shapes,
    )
    from lkseg.checkpoint.native import (
        read_metadata as metadata,
    )

    path: Path = args.checkpoint
    card = check_fits(path)  # an unknown architecture or a card that does not fit its tensors is an error
    if args.check:
        load_checkpoint(path)  # refuses a digest mismatch, non-finite weights, wrong shapes
    if args.json:
        print(json.dumps(card.to_dict(), indent=2))
        return 0
    shapes = tensor_shapes(path)
    n_values = sum(math.prod(shape) for shape, _ in shapes.values())
    dtypes = sorted({dtype for _, dtype in shapes.values()})
    n_params = _parameter_count(card)
    print(f"Checkpoint:     {path}")
    size = path.stat().st_size
    print(f"File size:      {_size(size)} ({size:,} bytes)")
    print(f"SHA-256:        {file_sha256(path)}")
    params = f"{n_params:,}; " if n_params is not None else ""
    print(f"Parameters:     {params}file holds {len(shapes)} tensors, {n_values:,} values ({', '.join(dtypes)})")
    print(card.summary())
    for line in _architecture_lines(card):
        print(line)
    if args.check:
        stored = DIGEST_KEY in metadata(path)
        print("Check:          weights load strictly into the network, all finite; "
              + ("they match the digest stored with them" if stored else
                 "the file stores no digest (written before lkseg kept one), so changes cannot be detected"))
    return 0
