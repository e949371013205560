"""Input checks shared by every module: they run in plain Python, before anything is traced.

Contract: a check returns the value it accepted (converted to a plain int or float) or raises
`InputError` (a ValueError) / `InputTypeError` (a TypeError) whose message names the argument,
says what came and what was expected. The command line turns exactly these two into a
message and exit status 2; any other exception is a bug and keeps its traceback.
"""
from __future__ import annotations

import math
import numbers


class InputError(ValueError):
    """A value the caller passed is not usable; the message says which and how to fix it."""


class InputTypeError(TypeError):
    """An argument has the wrong type; the message says which and what to pass."""


def integer(name: str, v, least: int | None = None) -> int:
    """`v` as an int (Python or NumPy integer, not bool), at least `least` if given."""
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise InputTypeError(f"{name} must be an int, got {type(v).__name__} {v!r}")
    if least is not None and v < least:
        raise InputError(f"{name} must be >= {least}, got {int(v)}")
    return int(v)


def real(name: str, v, *, positive: bool = False, lo: float | None = None,
         hi: float | None = None) -> float:
    """`v` as a finite float; > 0 if `positive`; inside the open interval (lo, hi) if given."""
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise InputTypeError(f"{name} must be a number, got {type(v).__name__} {v!r}")
    v = float(v)
    if not math.isfinite(v):
        raise InputError(f"{name} must be finite, got {v}")
    if positive and not v > 0:
        raise InputError(f"{name} must be > 0, got {v}")
    if (lo is not None and not v > lo) or (hi is not None and not v < hi):
        raise InputError(f"{name} must be in ({lo}, {hi}), got {v}")
    return v
