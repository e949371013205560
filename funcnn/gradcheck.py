"""Gradient check: the hand-written backprop, refereed by `jax.grad`.

Contract: `gradcheck(net, params, batch)` computes `funcnn.model.grads` and `jax.grad` of
`funcnn.model.loss` (the public functions a user calls; in float64 by default, so the
comparison is about the formulas, not rounding) and returns a `GradcheckReport`: the worst
relative error of each leaf, `max |hand - auto| / scale`, and whether all are below `rtol`.
`check_layer(layer, input_shape)` does the same for one layer alone: its `vjp` against
`jax.vjp` of its `apply`, for the params and the input. Both print as a small table in a REPL.
Run them after writing a new activation, loss or layer.

The scale of a leaf is the largest |auto| in it, but at least 1e-3 of the largest in the whole
tree: a leaf whose true gradient is zero (a bias just before a BatchNorm, which the
normalisation cancels) is rounding noise on both sides, judged against the network's scale.
"""
from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from funcnn import layers as L
from funcnn import model, rng
from funcnn.data import Dataset

FLOOR = 1e-3   # a leaf's scale is at least this fraction of the tree's largest gradient


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
        width = max(len(p) for p in self.errors)
        for path, e in self.errors.items():
            name = path if path.startswith("d") else f"params{path}"
            lines.append(f"  {name:<{width + 6}} {e:.2e}  {'ok' if e < self.rtol else 'FAIL'}")
        return "\n".join(lines)


def relative_error(hand, auto, floor: float = 0.0) -> float:
    """max |hand - auto| / max(max |auto|, floor): 0 when equal, ~eps of the dtype when only
    rounding differs."""
    hand, auto = np.asarray(hand), np.asarray(auto)
    scale = max(float(np.abs(auto).max(initial=0.0)), floor, float(np.finfo(auto.dtype).tiny))
    return float(np.abs(hand - auto).max(initial=0.0)) / scale


def compare(hand, auto) -> dict[str, float]:
    """Leaf path -> relative error, for two trees of the same structure."""
    hand, auto = jax.tree.map(np.asarray, (hand, auto))
    leaves = jax.tree.leaves(auto)
    top = max((float(np.abs(a).max(initial=0.0)) for a in leaves), default=0.0)
    return {jax.tree_util.keystr(path): relative_error(h, a, FLOOR * top)
            for (path, h), a in zip(jax.tree_util.tree_leaves_with_path(hand), leaves,
                                    strict=True)}


def _copy(key):
    """A second key with the same bits: both sides draw the same dropout mask, and jax's
    key-reuse checker sees two keys each used once."""
    return None if key is None else jax.random.wrap_key_data(jax.random.key_data(key))


@partial(jax.jit, static_argnames=("net", "train"))
def both_grads(net, params: model.Params, batch: Dataset, w: jax.Array | None = None,
               key=None, *, train: bool = True):
    """(hand-written backprop, jax.grad of the loss): two trees shaped like params, one program."""
    hand = model.grads(net, params, batch, w, train=train, key=key)
    auto = jax.grad(lambda p: model.loss(net, p, batch, w, train=train, key=_copy(key)))(params)
    return hand, auto


def _cast(tree, dtype):
    return jax.tree.map(lambda v: jnp.asarray(v, dtype), tree)


def gradcheck(net, params: model.Params, batch: Dataset, w=None, *, key=None,
              train: bool = True, x64: bool = True, rtol: float | None = None) -> GradcheckReport:
    """Compare `model.grads` with `jax.grad(model.loss)` leaf by leaf, in training mode (both
    sides draw the same dropout masks from `key`, by default `jax.random.key(0)`) or with
    `train=False`.

    x64=True (default) runs both in float64 (the params and batch are cast); rtol defaults to
    1e-9 in float64 and 1e-4 in float32.
    """
    with jax.enable_x64(x64):
        dtype = jnp.float64 if x64 else jnp.float32
        params, batch = _cast(params, dtype), Dataset(*_cast(tuple(batch), dtype))
        w = None if w is None else _cast(w, dtype)
        model.check_params(net, params)
        model.check_batch(net, batch)
        if key is None and train and net.layer.needs_key:
            key = jax.random.key(0)                     # a check: any fixed mask will do
        hand, auto = both_grads(net, params, batch, w, key, train=train)
        errors = compare(hand, auto)
    return GradcheckReport(errors, rtol if rtol is not None else (1e-9 if x64 else 1e-4),
                           "float64" if x64 else "float32")


def check_layer(layer, input_shape, *, key=None, n: int = 3, train: bool = True,
                x: jax.Array | None = None, params=None, x64: bool = True,
                rtol: float | None = None) -> GradcheckReport:
    """One layer alone: its hand-written `vjp` against `jax.vjp` of its `apply`, for its params
    and its input, with a random cotangent g. `x` defaults to `n` normal draws of
    `input_shape`, `params` to the layer's `init`; `key` (default `jax.random.key(0)`) draws
    them and the dropout mask. The report's `dx` row is dL/dx.

        check_layer(Conv2D(8, (3, 3), stride=2), input_shape=(9, 9, 3))
    """
    layer = L.as_layer(layer)
    input_shape = tuple(input_shape)
    out_shape = layer.shape(input_shape)                 # an InputError names a bad shape
    key = jax.random.key(0) if key is None else rng.check_key(key)
    with jax.enable_x64(x64):
        dtype = jnp.float64 if x64 else jnp.float32
        k_p, k_x, k_g, k_a = jax.random.split(key, 4)
        p = layer.init(k_p, input_shape, dtype) if params is None else _cast(params, dtype)
        x = (jax.random.normal(k_x, (n, *input_shape), dtype) if x is None
             else jnp.asarray(x, dtype))
        g = jax.random.normal(k_g, (x.shape[0], *out_shape), dtype)
        hand, auto = _layer_grads(layer, p, x, g, k_a, train=bool(train))
        errors = compare({"dp": hand[0], "dx": hand[1]}, {"dp": auto[0], "dx": auto[1]})
        errors = {k.replace("['dp']", "").replace("['dx']", "dx"): v for k, v in errors.items()}
    return GradcheckReport(errors, rtol if rtol is not None else (1e-9 if x64 else 1e-4),
                           "float64" if x64 else "float32")


@partial(jax.jit, static_argnames=("layer", "train"))
def _layer_grads(layer, p, x, g, key, *, train):
    y, cache = layer.apply(p, x, train, key)
    hand = layer.vjp(p, cache, g)
    _, pull = jax.vjp(lambda p, x: layer.apply(p, x, train, _copy(key))[0], p, x)
    return hand, pull(g)
