"""The ``lkseg`` command line.

Each subcommand lives in its own module of this package and exposes
``register(subparsers)``, which adds its parser and sets ``func`` (called with the parsed
arguments, returning an exit code). User errors (:class:`lkseg.errors.LkSegError`) are
printed as one clear line, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from lkseg import __version__
from lkseg.errors import Cancelled, LkSegError, os_error_message

#: subcommand modules, in the order ``lkseg --help`` lists them
SUBCOMMANDS = ["segment", "demo", "info", "import_cmd", "models", "evaluate", "dataset", "finetune", "jobs"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lkseg",
        description="LargeKernelSeg: organ segmentation of 3D medical images with large-kernel CNNs.",
    )
    parser.add_argument("--version", action="version", version=f"lkseg {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"lkseg.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"lkseg.cli.{name}":
                continue  # subcommand not part of this build
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except Cancelled as exc:
        print(f"lkseg: {exc}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("lkseg: interrupted", file=sys.stderr)
        return 130
    except LkSegError as exc:
        logging.getLogger("lkseg").debug("error details", exc_info=True)
        print(f"lkseg: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # full disk, permissions, a path that vanished: ordinary conditions
        logging.getLogger("lkseg").debug("error details", exc_info=True)
        print(f"lkseg: error: {os_error_message(exc)} (run with -v for details)", file=sys.stderr)
        return 2
    except MemoryError:
        logging.getLogger("lkseg").debug("error details", exc_info=True)
        print("lkseg: error: out of memory; try a smaller --sw-batch-size, another device, or a machine with "
              "more memory (run with -v for details)", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
