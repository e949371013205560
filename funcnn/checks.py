"""Input checks shared by every module: they run in plain Python, before anything is traced.

Contract: a check returns the value it accepted (converted to a plain int or float) or raises
`InputError` (a ValueError) / `InputTypeError` (a TypeError) whose message starts with the
argument's name, says what came and what was expected, and with `hint=` how to fix it. The
command line turns exactly these two into a message and exit status 2; any other exception is
a bug and keeps its traceback. A caller that names the argument itself passes `name=""`
(argparse writes "argument --lr: " before the message).
"""
from __future__ import annotations

import math
import numbers


class InputError(ValueError):
    """A value the caller passed is not usable; the message says which and how to fix it."""


class InputTypeError(TypeError):
    """An argument has the wrong type; the message says which and what to pass."""


def integer(name: str, v, least: int | None = None, most: int | None = None) -> int:
    """`v` as an int (Python or NumPy integer, not bool), in [least, most] where given.

    integer("epochs", 0, 1)  ->  InputError("epochs must be >= 1, got 0")
    """
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise InputTypeError(_named(name, f"must be an int, got {type(v).__name__} {v!r}"))
    if (least is not None and v < least) or (most is not None and v > most):
        want = (f"between {least} and {most}" if least is not None and most is not None
                else f">= {least}" if least is not None else f"<= {most}")
        raise InputError(_named(name, f"must be {want}, got {int(v)}"))
    return int(v)


def number(name: str, v, *, positive: bool = False, lo: float | None = None,
           hi: float | None = None, least: float | None = None, hint: str = "") -> float:
    """`v` as a finite float: > lo (or >= least) and < hi where given; `positive` is lo=0.

    A concrete 0-d array counts as its number; a traced one is refused, since a setting is
    fixed before `jit` traces (an optimizer, a layer are static arguments of it).
    number("mu", 1.0, least=0, hi=1, hint="0.9 is usual")
        ->  InputError("mu must be finite and in [0, 1), got 1.0; 0.9 is usual")
    """
    if not isinstance(v, numbers.Real) and getattr(v, "ndim", None) == 0:
        v = _concrete(name, v)
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise InputTypeError(_named(name, f"must be a number, got {type(v).__name__} {v!r}"))
    v = float(v)
    if positive:
        lo = 0.0 if lo is None else max(lo, 0.0)
    low, closed = (least, True) if least is not None else (lo, False)
    fits = ((low is None or (v >= low if closed else v > low)) and (hi is None or v < hi))
    if not (math.isfinite(v) and fits):
        raise InputError(_named(name, f"must be finite{_range(low, closed, hi)}, got {v}")
                         + (f"; {hint}" if hint else ""))
    return v


def short_repr(v) -> str:
    """repr(v) for a message, cut to 60 characters ("...") so that a big array stays short."""
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _concrete(name: str, v):
    """The number a 0-d array holds, or InputTypeError if it is traced (it holds none yet)."""
    import jax                        # here: only an array argument needs it (jax is loaded)
    if isinstance(v, jax.core.Tracer):
        raise InputTypeError(_named(name, "must be a Python number, not a traced value: it is "
                                    "fixed before jit traces; build the optimizer or layer "
                                    "outside the jitted function"))
    return v.item()


def _range(low, closed: bool, hi) -> str:
    """" and in [0, 1)", " and > 0", " and < 1", or "" when there is no bound."""
    if low is not None and hi is not None:
        return f" and in {'[' if closed else '('}{low:g}, {hi:g})"
    if low is not None:
        return f" and {'>=' if closed else '>'} {low:g}"
    return "" if hi is None else f" and < {hi:g}"


def _named(name: str, fault: str) -> str:
    return f"{name} {fault}" if name else fault


