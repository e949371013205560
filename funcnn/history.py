"""What a run reports: its progress lines, its history saved to a file, and when it stops early.

Contract: `fit` returns its history as a dict of arrays, one value per epoch (`f32[epochs]`;
`f32[m, epochs]` for an ensemble). `save(history, path)` writes it as JSON or CSV, whole or not
at all; `load(path)` reads it back. The progress functions run on the host, called from inside
the compiled loop by `jax.debug.callback`; the time they print counts from a clock passed in
as an argument of the run (no module state). `Stop` is the early-stopping rule of
`fit(..., patience=k)`: its state lives in the compiled loop's carry.
"""
from __future__ import annotations

import csv
import io
import json
import math
import time
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from funcnn import files
from funcnn.checks import InputError, InputTypeError, integer


# --- saving and loading ----------------------------------------------------------------------

def save(history: dict, path) -> Path:
    """Write `history` (fit's dict; one value per epoch, or [networks, epochs]) to `path`:
    `.json` as {"epoch": [1, 2, ...], name: [values]}, `.csv` as a table with a column
    `epoch` and one per name (an ensemble: `name[i]` per network). Entries that are not one
    number per epoch (a probe's snapshots) are left out; the file is written atomically.
    `best_epoch` and `epochs_run` (early stopping) are kept in the JSON as numbers."""
    path = Path(path)
    kind = path.suffix.lower()
    if kind not in (".json", ".csv"):
        raise InputError(f"path must end in .json or .csv (the format to write), got {path.name!r}")
    if not isinstance(history, dict):
        raise InputTypeError(f"history must be the dict fit returned, got {type(history).__name__}")
    columns, scalars = _columns(history)
    epochs = len(next(iter(columns.values()))) if columns else 0
    table = {"epoch": list(range(1, epochs + 1)), **columns}
    if kind == ".json":
        text = json.dumps({**table, **scalars}, indent=1) + "\n"
    else:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(table)
        writer.writerows(zip(*table.values()))
        text = out.getvalue()
    return files.write_text_atomic(path, text)


def load(path) -> dict:
    """A history `save` wrote: {name: f32[epochs]} (and the scalar entries, from JSON)."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        raw = json.loads(path.read_text(encoding="utf-8"))
        return {k: (np.asarray(v, np.float32) if isinstance(v, list) else v)
                for k, v in raw.items() if k != "epoch"}
    rows = list(csv.reader(path.read_text(encoding="utf-8").splitlines()))
    names, values = rows[0], np.asarray(rows[1:], np.float64).reshape(-1, len(rows[0]))
    return {n: values[:, j].astype(np.float32) for j, n in enumerate(names) if n != "epoch"}


def _columns(history: dict) -> tuple[dict, dict]:
    """(per-epoch columns as lists of floats, scalar entries) of a history."""
    columns, scalars = {}, {}
    for name, v in history.items():
        v = np.asarray(v)
        if v.ndim == 0:
            scalars[name] = v.item()
        elif v.ndim == 1:
            columns[name] = [float(x) for x in v]
        elif v.ndim == 2 and name != "probe":                  # an ensemble: [m, epochs]
            for i, row in enumerate(v):
                columns[f"{name}[{i}]"] = [float(x) for x in row]
    return columns, scalars


# --- progress lines --------------------------------------------------------------------------

ETA_AFTER = 3.0     # seconds: a run shorter than this prints no estimate of the time left


def clock() -> np.ndarray:
    """Now, as u32[2] (high and low words of perf_counter_ns): an argument of the compiled
    run, so its progress lines count from the call that started it (no module state)."""
    return np.array(divmod(time.perf_counter_ns(), 1 << 32), np.uint32)


def elapsed(clock) -> float:
    hi, lo = (int(v) for v in np.asarray(clock))
    return (time.perf_counter_ns() - (hi << 32 | lo)) / 1e9


def every(verbose) -> int:
    """verbose -> print every this many epochs (0: never). True is 1; an int N is every N."""
    return int(verbose) if isinstance(verbose, bool) else integer("verbose", verbose, 0)


def _time(seconds: float, done: int, total: int, digits: int = 1) -> str:
    """`(12.3 s)`, and once a run is past ETA_AFTER with work left, `(12.3 s, ~40 s left)`
    (`digits` after the point: 2 on the epoch lines, whose runs are often short):
    the mean time per unit so far (compiling included, so early estimates run high) times
    the units left."""
    if done >= total or done <= 0 or seconds < ETA_AFTER:
        return f"({seconds:.{digits}f} s)"
    left = seconds / done * (total - done)
    shown = f"{left:.0f} s" if left < 120 else f"{left / 60:.1f} min"
    return f"({seconds:.{digits}f} s, ~{shown} left)"


def print_step(steps, total, loss_name, step, done, loss, clock):
    """Host side of the every-N-steps callback, within a long epoch: `step` of the epoch's
    `steps`, `done` of the call's `total` (for the time left)."""
    print(f"  step {int(step):>{len(str(steps))}}/{steps}  batch {loss_name} "
          f"{float(loss):.4f}  {_time(elapsed(clock), int(done), total)}", flush=True)


def print_epoch(epochs, first, every, loss_name, i, history, clock):
    """Host side of the per-epoch callback: one line, test numbers first as in the original.
    `first`: the epoch this call started at (a resumed run's estimate counts from it). The
    square root of an mse is shown beside it (rmse, in the targets' units)."""
    if int(i) % every and int(i) != epochs:
        return                                  # between two printed epochs: nothing to say
    parts = [f"epoch {int(i):>{len(str(epochs))}}/{epochs}"]
    order = ("test_accuracy", "test_loss", "train_loss", "train_accuracy")
    rmse = loss_name == "mse" and "train_accuracy" not in history       # a regression's mse
    for name in (n for n in order if n in history):
        label = name.replace("_", " ").replace("loss", loss_name)
        v = np.asarray(history[name])
        if v.ndim:                                              # many networks: mean [min, max]
            parts.append(f"{label} {v.mean():.4f} [{v.min():.4f}, {v.max():.4f}]")
        else:
            root = f" (rmse {math.sqrt(max(float(v), 0)):.4f})" if rmse and "loss" in name else ""
            parts.append(f"{label} {float(v):.4f}{root}")
    parts.append(_time(elapsed(clock), int(i) - first, epochs - first, digits=2))
    if not all(np.isfinite(np.asarray(v)).all() for v in history.values()):
        parts.append("<- NaN or Inf: training diverged; lower lr")
    print("  ".join(parts), flush=True)


# --- early stopping ----------------------------------------------------------------------------

class Stop(NamedTuple):
    """Early stopping's state, in the compiled loop's carry: the best monitored value so far,
    its epoch (0: none yet), the epochs since it, and the params of that epoch."""
    best: jax.Array          # f32[]: the best value of the monitored entry so far
    epoch: jax.Array         # i32[]: the epoch that gave it (1-based; 0 before any)
    waited: jax.Array        # i32[]: epochs since then without improvement
    params: object           # the params after that epoch

    @staticmethod
    def start(params, dtype) -> "Stop":
        return Stop(jnp.asarray(jnp.inf, dtype), jnp.zeros((), jnp.int32),
                    jnp.zeros((), jnp.int32), params)

    def stopped(self, patience: int) -> jax.Array:
        return self.waited >= patience

    def after(self, epoch, value, params, sign: float, min_delta: float) -> "Stop":
        """The state after an epoch whose monitored value is `value` (sign -1 for an entry
        to maximise, as accuracy: the rule minimises sign * value). Better means below the
        best by more than min_delta; a NaN is never better."""
        v = sign * value
        better = v < self.best - min_delta
        keep = lambda new, old: jnp.where(better, new, old)     # noqa: E731
        return Stop(keep(v, self.best), keep(epoch, self.epoch),
                    jnp.where(better, 0, self.waited + 1),
                    jax.tree.map(keep, params, self.params))


def monitor_sign(monitor: str) -> float:
    """+1 for an entry to minimise (a loss), -1 for one to maximise (an accuracy)."""
    return -1.0 if "accuracy" in monitor else 1.0


def check_patience(patience, monitor, names, min_delta) -> tuple:
    """(patience, monitor, min_delta) checked for fit(..., patience=...); `names`: the
    entries this run's history will have."""
    if patience is None:
        return None, None, 0.0
    patience = integer("patience", patience, 1)
    if monitor is None:
        if "test_loss" not in names:
            raise InputError("patience watches test_loss by default, but no test set was "
                             "given: pass test data, or monitor='train_loss'")
        monitor = "test_loss"
    if monitor not in names:
        raise InputError(f"monitor must name an entry of this run's history, one of "
                         f"{list(names)}; got {monitor!r}")
    try:
        min_delta = float(min_delta)
    except (TypeError, ValueError):
        min_delta = float("nan")
    if not min_delta >= 0:
        raise InputError(f"min_delta must be a number >= 0 (the least change that counts as "
                         f"an improvement), got {min_delta!r}")
    return patience, monitor, min_delta
