"""Metrics: numbers that say how good the output `a: f32[n, k]` is for labels `y`.

Contract: pure functions of arrays, usable under `jit` and `vmap`. A class is the argmax of a
row (k >= 2) or `a > 0.5` (one output column, a probability); class ids (`y: int[n]`, an
integer dtype) are classes as they are, so `accuracy` and `confusion_matrix` read one-hot rows
and ids alike. An output of positions, `f32[n, t, k]`, has a class at each position.
Optional `w: f32[n]` weights (0 for padding rows) make every mean a mean over the real rows
only: the losses' weighted mean, and where a metric is a loss's value (mse, cross-entropy),
the loss's own function.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from funcnn import losses
from funcnn.losses import weighted_mean


def predict_class(a: jax.Array) -> jax.Array:
    """`a: f32[n, k]` -> `i32[n]`: argmax over k, or `a[..., 0] > 0.5` when k = 1 (and
    `f32[n, t, k]` -> `i32[n, t]`); class ids `int[n]` come back as they are."""
    if jnp.issubdtype(a.dtype, jnp.integer):
        return a
    if a.shape[-1] == 1:
        return (a[..., 0] > 0.5).astype(jnp.int32)
    return jnp.argmax(a, axis=-1).astype(jnp.int32)


def accuracy(a: jax.Array, y: jax.Array, w: jax.Array | None = None) -> jax.Array:
    """Fraction of rows whose predicted class is the labelled one (with positions: a row's
    fraction of its positions), `y` one-hot rows or class ids."""
    hit = (predict_class(a) == predict_class(y)).astype(a.dtype)
    return weighted_mean(losses.row_mean(hit), w)


def mse(a: jax.Array, y: jax.Array, w: jax.Array | None = None) -> jax.Array:
    """Mean over rows of the mean squared error over columns: the loss `losses.mse`'s value."""
    return losses.mse.fn(a, y, w)


def cross_entropy(p: jax.Array, y: jax.Array, w: jax.Array | None = None,
                  eps: float = losses.EPS) -> jax.Array:
    """Mean over rows of `-sum_j y_j log(p_j + eps)` for probabilities `p` (seed 2's form):
    the loss `losses.nll` of log(p + eps)."""
    return losses.nll.fn(jnp.log(p + eps), y, w)


def confusion_matrix(a: jax.Array, y: jax.Array, k: int | None = None) -> jax.Array:
    """`i32[k, k]`: row = true class, column = predicted class, entry = count (each position's,
    for outputs of positions). k: by default the labels' width, or the output's for class ids
    (at least 2)."""
    k = k or max((a if jnp.issubdtype(y.dtype, jnp.integer) else y).shape[-1], 2)
    true, pred = predict_class(y).reshape(-1), predict_class(a).reshape(-1)
    return jnp.zeros((k, k), jnp.int32).at[true, pred].add(1)
