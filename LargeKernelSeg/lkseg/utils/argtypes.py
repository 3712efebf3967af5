"""argparse types that refuse impossible numbers with a message saying what is allowed, so a
``--batch-size 0`` or ``--lr -1`` ends in one clear line instead of a traceback deep in training."""

from __future__ import annotations

import argparse
import math


def _parse(text: str, kind: type, valid, requirement: str):
    """``text`` as ``kind`` if it is a finite number that ``valid`` accepts, else an argparse error saying
    ``requirement``."""
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a {'whole number' if kind is int else 'number'}") from None
    if not math.isfinite(value) or not valid(value):
        raise argparse.ArgumentTypeError(f"{text} is not allowed: give {requirement}")
    return value


def positive_int(text: str) -> int:
    """A whole number >= 1."""
    return _parse(text, int, lambda v: v >= 1, "a whole number of at least 1")


def non_negative_int(text: str) -> int:
    """A whole number >= 0."""
    return _parse(text, int, lambda v: v >= 0, "a whole number of at least 0")


def positive_float(text: str) -> float:
    """A finite number > 0."""
    return _parse(text, float, lambda v: v > 0, "a finite number greater than 0")


def non_negative_float(text: str) -> float:
    """A finite number >= 0."""
    return _parse(text, float, lambda v: v >= 0, "a finite number of at least 0")


def fraction(text: str) -> float:
    """A number in [0, 1)."""
    return _parse(text, float, lambda v: 0 <= v < 1, "a number of at least 0 and below 1")
