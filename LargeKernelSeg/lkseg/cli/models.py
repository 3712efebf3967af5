"""``lkseg models``: list the registered networks with their parameter counts."""

from __future__ import annotations

import argparse

from lkseg.utils.argtypes import positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the registered networks and their parameter counts")
    p.add_argument("--in-channels", type=positive_int, default=1)
    p.add_argument("--out-channels", type=positive_int, default=14, help="classes including background (default 14, BTCV)")
    p.add_argument("--forward", action="store_true",
                   help="also run one forward pass of a small configuration on random data")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from lkseg.models import build_model, count_parameters, list_models

    print(f"{'architecture':<22} {'parameters':>12}  paper / description")
    for spec in list_models():
        try:  # the meta device counts parameters without allocating them
            with torch.device("meta"):
                model = build_model(spec.name, args.in_channels, args.out_channels)
        except (RuntimeError, NotImplementedError):  # a constructor that reads tensor values
            model = build_model(spec.name, args.in_channels, args.out_channels)
        print(f"{spec.name:<22} {count_parameters(model):>12,}  {spec.paper or spec.description}")
    if args.forward:
        x = torch.randn(1, args.in_channels, 64, 64, 64)
        for spec in list_models():
            model = build_model(spec.name, args.in_channels, args.out_channels, **spec.small_config).eval()
            with torch.no_grad():
                y = model(x)
            y = y[0] if isinstance(y, (list, tuple)) else y
            print(f"forward {spec.name}: input {tuple(x.shape)} -> output {tuple(y.shape)}, finite={bool(torch.isfinite(y).all())}")
    return 0
