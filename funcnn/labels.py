"""Labels: what `y` a loss reads, and the checks that refuse the rest before anything compiles.

Contract: `label_kind(y)` names what labels hold: "ids" (class ids, an integer dtype: `int[n]`,
or `int[n, t]`, a class per position), "one-hot" (0s and a single 1 per row; one column: a 0
or a 1), "multi-hot" (0s and 1s, any count) or "real" (any other numbers). A loss declares what
it reads in its `labels` field (`funcnn.losses.Loss`), and `check_labels` holds `y` to it:
  "classes"  ids in [0, k), or one-hot rows shaped like the output (softmax_cross_entropy, nll);
  "binary"   numbers in [0, 1] shaped like the output: one-hot, multi-hot or soft labels
             (binary_cross_entropy, sigmoid_binary_cross_entropy);
  "real"     any finite numbers shaped like the output (mse, huber, and a Loss of your own).
Shapes and dtypes are checked always; values only on concrete arrays, where they live: in host
memory by NumPy (nothing compiles), on a GPU or over several hosts by one compiled reduction on
the data's devices (three numbers come back). Under `jit` or `vmap` the shapes alone are read.
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from funcnn.checks import InputError, InputTypeError

LABELS = ("classes", "binary", "real")              # what a loss reads: its Loss.labels


def in_host_memory(v) -> bool:
    """NumPy, or a JAX array whole on this process's CPU (NumPy reads it in place)."""
    return not isinstance(v, jax.Array) or (
        v.is_fully_addressable and all(d.platform == "cpu" for d in v.devices()))


def describe(v) -> str:
    """An array as a message shows it: "float32[6, 3]"; anything else by its type's name."""
    shape = getattr(v, "shape", None)
    if shape is None:
        return type(v).__name__
    return f"{getattr(v, 'dtype', '')}{list(shape)}"


def is_ids(y) -> bool:
    """Does `y` hold class ids, i.e. have an integer dtype (bool does not count)?"""
    return jnp.issubdtype(getattr(y, "dtype", None), jnp.integer)


def label_kind(y) -> str:
    """"ids", "one-hot", "multi-hot" or "real" (see the module's contract), read on the host.

    Rows run along the last axis (a 1-D float `y` is one column). A traced `y` has no values
    to read: "ids" for an integer dtype, "one-hot" for any other.
        label_kind(np.array([2, 0]))                -> "ids"
        label_kind(np.eye(3)[[2, 0]])               -> "one-hot"
        label_kind(np.array([[1.0, 1.0, 0.0]]))     -> "multi-hot"
        label_kind(np.array([[0.3], [-1.2]]))       -> "real"
    """
    if not hasattr(y, "dtype"):
        y = np.asarray(y)
    _check_has_rows(y, "y")
    if is_ids(y):
        return "ids"
    if isinstance(y, jax.core.Tracer):
        return "one-hot"
    _, not_zero_one, not_one_hot = _found(y, 0)
    return "real" if not_zero_one >= 0 else "multi-hot" if not_one_hot >= 0 else "one-hot"


def check_ids(y, k: int, name: str = "labels") -> None:
    """Raise unless `y` holds class ids for k classes: an integer (or bool) dtype, and on
    concrete arrays every id in [0, k). funcnn.data.one_hot checks its labels so."""
    _check_has_rows(y, name)
    if not (is_ids(y) or y.dtype == np.bool_):
        raise InputTypeError(f"{name} must be integer class ids in [0, {k}), got {describe(y)}; "
                             f"if it holds whole numbers, pass {name}.astype(np.int32)")
    if not isinstance(y, jax.core.Tracer) and is_ids(y):
        _check_id_values(y, k, name, "one_hot", "pass k={}")


def check_labels(y, loss, output_shape, name: str = "y") -> None:
    """Raise unless `y` is what `loss` reads (its `labels`: "classes", "binary", "real"; a
    loss without the field counts as "real") for an output of `output_shape` per example
    (`(k,)`, or `(t, k)` a class per position). The message names `name`, what came, what
    the loss expects and the fix. `y` must have passed `funcnn.data.check_dataset`."""
    labels = getattr(loss, "labels", "real")
    out, n = tuple(output_shape), y.shape[0]
    k, where = out[-1], out[:-1]                             # classes, positions per example
    rows = f"f32[{', '.join(map(str, (n, *out)))}]"
    if labels == "classes":
        expected = (f"class ids int[{', '.join(map(str, (n, *where)))}] in [0, {k}) or "
                    f"one-hot rows {rows}")
    elif labels == "binary":
        expected = f"rows {rows} of 0s and 1s (one or more 1s a row) or of numbers in [0, 1]"
    else:
        expected = f"real targets {rows}, shaped like the network's output"
    got = f"{name} is {describe(y)} but {loss.name} expects {expected}"
    concrete = not isinstance(y, jax.core.Tracer)
    if labels == "classes" and is_ids(y):
        if y.shape[1:] != where:
            fix = (f"pass the ids, {name}.argmax(-1), or the rows as floats, "
                   f"{name}.astype(np.float32)" if y.shape[1:] == out else
                   f"give one id per example, int[{n}] (int[n, t] for an output of t "
                   "positions)")
            raise InputError(f"{got}; integer labels are class ids: {fix}")
        if concrete:
            _check_id_values(y, k, name, loss.name, "make the network's output {} wide")
        return
    if is_ids(y):                                            # ids for a binary or real loss
        fix = (f"pass {name}.astype(np.float32)" if y.shape[1:] == out else
               f"pass {name}.reshape(-1, 1).astype(np.float32)" if out == (1,) and y.ndim == 1
               else f"pass funcnn.data.one_hot({name}, {k}), or train with "
                    "softmax_cross_entropy, which reads ids")
        raise InputError(f"{got}; integer labels are class ids: {fix}")
    if y.shape[1:] != out:
        if labels == "classes" and y.shape[1:] == where:
            raise InputError(f"{got}; class ids must be integers: pass {name}.astype(np.int32) "
                             "if it holds whole numbers")
        if y.ndim == 1 and out == (1,):
            raise InputError(f"{got}; one column per output: pass {name}.reshape(-1, 1)")
        if y.ndim == len(out) + 1 and y.shape[1:-1] == where:
            raise InputError(f"{name} is {y.shape[-1]} wide but the network has {k} outputs; "
                             f"make the last layer {y.shape[-1]} wide")
        raise InputError(got)
    if labels == "real" or not concrete:
        return
    outside, not_zero_one, not_one_hot = _found(y, 0)
    if labels == "binary" and outside >= 0:
        raise InputError(f"{name} holds a number outside [0, 1] in row {outside}, "
                         f"{_row(y, outside)}, but {loss.name} expects {expected}; for other "
                         "targets use mse or huber")
    if labels == "classes" and not_one_hot >= 0:
        full = _row(y, not_one_hot, most=None).reshape(-1, k)       # [positions, k]
        multi = not_zero_one < 0 and (full.sum(axis=-1) > 1).any()   # 0/1, several 1s
        several = (" Rows with several 1s are multi-label: train them with "
                   "sigmoid_binary_cross_entropy." if multi else "")
        raise InputError(f"{name} is not one-hot: each row must hold 0s and a single 1 (or, "
                         f"with one column, a 0 or a 1); row {not_one_hot} is "
                         f"{_row(y, not_one_hot)}. Use funcnn.data.one_hot(labels, {k}), or "
                         f"pass the class ids as integers, int[{n}].{several}")


def _check_has_rows(y, name: str) -> None:
    if getattr(y, "ndim", 0) < 1:
        raise InputTypeError(f"{name} must be an array with a row per example, got "
                             f"{describe(y)}")


def _check_id_values(y, k: int, name: str, who: str, wider: str) -> None:
    """Raise if a concrete integer `y` holds an id outside [0, k), naming its row; `who`
    reads the ids, `wider` ("pass k={}") says how to make room for more classes."""
    bad = _found(y, k)[0]
    if bad >= 0:
        row = _row(y, bad, most=None)
        v = int(row[(row < 0) | (row >= k)][0])
        why = "ids count from 0" if v < 0 else f"for {v + 1} classes {wider.format(v + 1)}"
        raise InputError(f"{name} holds class id {v} in row {bad}, but {who} reads ids in "
                         f"[0, {k}), one per class ({why})")


def _row(y, i: int, most: int | None = 12):
    """Row i, flat (its first `most` numbers as a list of floats, for a message); read from
    host memory where it lives there (indexing a JAX array would compile)."""
    row = np.asarray(y)[i] if in_host_memory(y) else np.asarray(jax.device_get(y[i]))
    row = row.reshape(-1)
    return row if most is None else [float(v) for v in row[:most]]


def _scan(xp, y, k):
    """(first row holding an id outside [0, k) (integer y) or a number outside [0, 1] (other
    y), first row not all 0s and 1s, first row not one-hot), -1 where none; a row is all of an
    example's positions. `xp` is NumPy or jax.numpy, the same code for both."""
    n = y.shape[0]

    def first(bad):                                   # bad: bool[n, ...] -> a row or -1
        bad = bad.reshape(n, -1).any(axis=1)
        return xp.where(bad.any(), xp.argmax(bad), -1)
    if xp.issubdtype(y.dtype, xp.integer):
        return first((y < 0) | (y >= k)), -1, -1
    rows = y.reshape(n, -1, y.shape[-1] if y.ndim > 1 else 1)     # [n, positions, k]
    zero_one = (rows == 0) | (rows == 1)
    single = (rows.sum(axis=-1) == 1) if rows.shape[-1] > 1 else True
    return (first(~((rows >= 0) & (rows <= 1))), first(~zero_one),
            first(~(zero_one.all(axis=-1) & single)))


_scan_on_device = jax.jit(partial(_scan, jnp), static_argnums=1)   # where the data are


def _found(y, k: int) -> tuple[int, int, int]:
    """_scan of a concrete `y`: by NumPy in host memory, else on the data's devices."""
    if y.size == 0:
        return -1, -1, -1
    if in_host_memory(y):
        found = _scan(np, np.asarray(y), k)                  # a view, not a copy
    else:
        with jax.ensure_compile_time_eval():                 # concrete under an outer jit
            found = jax.device_get(_scan_on_device(jnp.asarray(y), k))
    return tuple(int(v) for v in found)
