"""Gradient check: the hand-written backprop of `funcnn.model.grads`, refereed by `jax.grad`.

Contract: `gradcheck(net, params, batch)` computes both gradients (in float64 by default, so
the comparison is about the formulas, not rounding) and returns a `GradcheckReport`: the worst
relative error of each leaf, `max |hand - auto| / max |auto|`, and whether all are below `rtol`.
It prints as a small table in a REPL. Run it after writing a new activation or loss.
"""
from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from funcnn import model
from funcnn.data import Dataset


class GradcheckReport(NamedTuple):
    errors: dict[str, float]   # leaf path, e.g. "[0]['w']" -> worst relative error
    rtol: float                # a leaf passes when its error is below this
    dtype: str                 # the precision the check ran in

    @property
    def passed(self) -> bool:
        return all(e < self.rtol for e in self.errors.values())

    @property
    def worst(self) -> float:
        return max(self.errors.values())

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        lines = [f"gradcheck ({self.dtype}, rtol {self.rtol:.0e}): "
                 f"{'PASS' if self.passed else 'FAIL'}, worst {self.worst:.2e}"]
        for path, e in self.errors.items():
            lines.append(f"  params{path:<10} {e:.2e}  {'ok' if e < self.rtol else 'FAIL'}")
        return "\n".join(lines)


def relative_error(hand, auto) -> float:
    """max |hand - auto| / max |auto|: 0 when equal, ~eps of the dtype when only rounding differs."""
    hand, auto = np.asarray(hand), np.asarray(auto)
    scale = max(float(np.abs(auto).max()), float(np.finfo(auto.dtype).tiny))
    return float(np.abs(hand - auto).max()) / scale


@partial(jax.jit, static_argnums=0)
def both_grads(net: model.MLP, params: model.Params, batch: Dataset, w: jax.Array):
    """(hand-written backprop, jax.grad of the loss): two trees shaped like params, one program."""
    hand = model._value_and_grads(net, params, batch, w)[1]
    auto = jax.grad(model._loss, argnums=1)(net, params, batch, w)
    return hand, auto


def gradcheck(net: model.MLP, params: model.Params, batch: Dataset, w=None, *,
              x64: bool = True, rtol: float | None = None) -> GradcheckReport:
    """Compare `model.grads` with `jax.grad(model.loss)` leaf by leaf.

    x64=True (default) runs both in float64 (the params and batch are cast); rtol defaults to
    1e-9 in float64 and 1e-4 in float32.
    """
    with jax.enable_x64(x64):
        dtype = jnp.float64 if x64 else jnp.float32
        cast = lambda tree: jax.tree.map(lambda v: jnp.asarray(v, dtype), tree)
        params, batch = cast(params), Dataset(*cast(tuple(batch)))
        w = None if w is None else cast(w)
        model.check_params(net, params)
        model.check_batch(net, batch)
        hand, auto = both_grads(net, params, batch, model._weights(w, batch))
        leaves = jax.tree_util.tree_leaves_with_path(hand)
        errors = {jax.tree_util.keystr(path): relative_error(h, a)
                  for (path, h), a in zip(leaves, jax.tree.leaves(auto), strict=True)}
    return GradcheckReport(errors, rtol if rtol is not None else (1e-9 if x64 else 1e-4),
                           "float64" if x64 else "float32")
