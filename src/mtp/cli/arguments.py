"""Argument types of the ``mtp tool`` commands: numbers are checked when parsed, so ``--n -3`` stops with
``argument --n: must be an integer >= 1, got '-3'`` (exit code 2) instead of running with a nonsense value."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

__all__ = ["fraction", "int_at_least", "nonnegative_int", "positive_float", "positive_int", "probability"]


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {text!r}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


positive_int = int_at_least(1)
nonnegative_int = int_at_least(0)


def _float(text: str, rule: str, ok: Callable[[float], bool]) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {rule}, got {text!r}") from None
    if not math.isfinite(value) or not ok(value):
        raise argparse.ArgumentTypeError(f"must be {rule}, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0."""
    return _float(text, "a number > 0", lambda v: v > 0)


def fraction(text: str) -> float:
    """An argparse type: a number in [0, 1] (a share of the images)."""
    return _float(text, "a number in [0, 1]", lambda v: 0.0 <= v <= 1.0)


def probability(text: str) -> float:
    """An argparse type: a number in (0, 1] (an IoU threshold)."""
    return _float(text, "a number in (0, 1]", lambda v: 0.0 < v <= 1.0)
