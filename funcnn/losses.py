"""Losses: a scalar from the network's output and the labels, and its gradient by hand.

Contract: a `Loss` holds `fn(a, y, w) -> L` and `vjp(a, y, w) -> dL/da`, where
`a: f32[n, k]` is the network's output (or `f32[n, t, k]`, k numbers at each of t positions),
`y` the labels and `w: f32[n]` a weight per example (1 for a real row, 0 for padding), and
says in `labels` which labels it reads (`funcnn.labels` checks them before anything runs):
"classes" (class ids `int[n]` (`int[n, t]`) or one-hot rows shaped like `a`), "binary" (rows
of numbers in [0, 1] shaped like `a`) or "real" (any numbers shaped like `a`; the default, so
a `Loss(name, fn, vjp)` of your own reads real targets). An example's loss l_i is the mean
over its positions (and, for mse, huber and the binary losses, over its k columns too); every
loss is a weighted mean over the examples, `L = sum_i w_i l_i / sum_i w_i`, so a padded batch
means the same as its real rows; `fn` also takes `w=None`, every row weighing 1
(funcnn.metrics reuses it so).
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from funcnn.checks import number
from funcnn.math import log_softmax, sigmoid, softmax

Array = jax.Array


class Loss(NamedTuple):
    name: str
    fn: Callable[[Array, Array, Array], Array]    # (a, y, w) -> scalar L
    vjp: Callable[[Array, Array, Array], Array]   # (a, y, w) -> dL/da, shaped like a
    labels: str = "real"                          # what y it reads: "classes", "binary", "real"

    def __repr__(self) -> str:
        return self.name


def weighted_mean(per_example, w=None):
    """sum_i w_i l_i / sum_i w_i for `per_example: f32[n]`, `w: f32[n]`; the mean if w is None."""
    return per_example.mean() if w is None else (w * per_example).sum() / w.sum()


def row_mean(v):
    """`v: f[n, ...]` -> `f[n]`: each row's mean over its other axes (v itself if 1-D)."""
    return v if v.ndim == 1 else v.reshape(v.shape[0], -1).mean(axis=-1)


def _coef(w, a):
    """dL/dl_ip = w_i / (sum w * P) for l_i = mean_p l_ip over P positions (P = 1 for a 2-D
    output), shaped [n, 1, ...] to scale a gradient shaped like `a`."""
    positions = math.prod(a.shape[1:-1])
    c = w / w.sum() if positions == 1 else w / (w.sum() * positions)
    return c.reshape(-1, *(1,) * (a.ndim - 1))


def _is_ids(y) -> bool:
    return jnp.issubdtype(y.dtype, jnp.integer)


def _take(v, y):
    """v at each class id: `v: f[n, ..., k]`, `y: int[n, ...]` -> `f[n, ...]`, a gather."""
    return jnp.take_along_axis(v, y[..., None], axis=-1)[..., 0]


def _hot(y, a):
    """[j == y]: `y: int[n, ...]` -> `a.dtype[n, ..., k]`, compared with arange(k) where the
    gradient needs it (XLA fuses it into the subtraction; no one-hot labels are stored)."""
    classes = jnp.arange(a.shape[-1]).reshape(*(1,) * (a.ndim - 1), -1)
    return (y[..., None] == classes).astype(a.dtype)


def _mse(a, y, w):
    return weighted_mean(row_mean((a - y) ** 2), w)           # l_i = mean_j (a_ij - y_ij)^2
def _mse_vjp(a, y, w):
    return _coef(w, a) * 2.0 * (a - y) / a.shape[-1]          # dl_i/da_ij = 2 (a_ij - y_ij) / k
mse = Loss("mse", _mse, _mse_vjp, "real")


@lru_cache(maxsize=None)                          # one Loss per delta: jit compiles it once
def _huber(delta: float) -> Loss:
    def fn(a, y, w):
        # l_i = mean_j h(a_ij - y_ij), h(x) = x^2 / 2 for |x| <= delta, else delta (|x| - delta/2)
        x = jnp.abs(a - y)
        q = jnp.minimum(x, delta)                             # h(x) = q^2 / 2 + delta (|x| - q)
        return weighted_mean(row_mean(0.5 * q ** 2 + delta * (x - q)), w)
    def vjp(a, y, w):
        # dl_i/da_ij = h'(a_ij - y_ij) / k, h'(x) = x clipped to [-delta, delta]
        return _coef(w, a) * jnp.clip(a - y, -delta, delta) / a.shape[-1]
    return Loss("huber" if delta == 1.0 else f"huber(delta={delta:g})", fn, vjp, "real")


def huber_loss(delta: float = 1.0) -> Loss:
    """The Huber loss of real targets (optax's `huber_loss`): squared error up to `delta`,
    linear past it, so an outlier pulls with at most `delta`. The same `delta`, the same Loss."""
    return _huber(number("delta", delta, positive=True))
huber = huber_loss(1.0)


def _softmax_cross_entropy(z, y, w):
    log_p = log_softmax.fn(z)                                 # lse by log_softmax
    if _is_ids(y):
        return weighted_mean(row_mean(-_take(log_p, y)), w)   # l_i = lse(z_i) - z_{i, y_i}
    # l_i = -sum_j y_ij log softmax(z_i)_j = sum_j y_ij (lse(z_i) - z_ij)
    return weighted_mean(row_mean(-(y * log_p).sum(axis=-1)), w)
def _softmax_cross_entropy_vjp(z, y, w):
    p = softmax.fn(z)
    if _is_ids(y):
        return _coef(w, z) * (p - _hot(y, z))                 # dl_i/dz_ij = p_ij - [j == y_i]
    # dl_i/dz_ij = softmax(z_i)_j sum_m y_im - y_ij   (= p - y for one-hot y)
    return _coef(w, z) * (p * y.sum(axis=-1, keepdims=True) - y)
softmax_cross_entropy = Loss("softmax_cross_entropy", _softmax_cross_entropy,
                             _softmax_cross_entropy_vjp, "classes")


def _nll(log_p, y, w):
    if _is_ids(y):
        return weighted_mean(row_mean(-_take(log_p, y)), w)   # l_i = -log p_{i, y_i}
    return weighted_mean(row_mean(-(y * log_p).sum(axis=-1)), w)   # l_i = -sum_j y_ij log p_ij
def _nll_vjp(log_p, y, w):
    if _is_ids(y):
        return _coef(w, log_p) * -_hot(y, log_p)              # dl_i/d(log p_ij) = -[j == y_i]
    return _coef(w, log_p) * -y                               # dl_i/d(log p_ij) = -y_ij
nll = Loss("nll", _nll, _nll_vjp, "classes")


def _sigmoid_binary_cross_entropy(z, y, w):
    # l_i = mean_j -[y log s(z) + (1 - y) log(1 - s(z))] = mean_j max(z, 0) - z y + log(1 + e^-|z|)
    # on logits z (optax's sigmoid_binary_cross_entropy): e^-|z| <= 1, so finite at any |z|
    l = jnp.maximum(z, 0) - z * y + jnp.log1p(jnp.exp(-jnp.abs(z)))
    return weighted_mean(row_mean(l), w)
def _sigmoid_binary_cross_entropy_vjp(z, y, w):
    return _coef(w, z) * (sigmoid.fn(z) - y) / z.shape[-1]   # dl_i/dz_ij = (s(z_ij) - y_ij) / k
sigmoid_binary_cross_entropy = Loss("sigmoid_binary_cross_entropy",
                                    _sigmoid_binary_cross_entropy,
                                    _sigmoid_binary_cross_entropy_vjp, "binary")


# log(p + EPS), in the losses and the metrics alike: finite when a float32 probability
# saturates to exactly 0 or 1 (a sigmoid does from |z| ~ 18). Why 1e-7: float32 resolves 1 - p
# only to ~1e-7 (its epsilon is 2^-23 = 1.2e-7), so a saturated p then scores about as one a
# step away does (-log 1e-7 = 16.1 against 15.6); a smaller eps (metrics had 1e-8: 18.4 against
# 16.5) adds loss, and gradient 1/eps, for rounding alone. Keras's epsilon is 1e-7 too.
EPS = 1e-7


def _binary_cross_entropy(p, y, w):
    # l_i = -mean_j [y log(p + eps) + (1 - y) log(1 - p + eps)]
    return weighted_mean(row_mean(-(y * jnp.log(p + EPS) + (1 - y) * jnp.log(1 - p + EPS))), w)
def _binary_cross_entropy_vjp(p, y, w):
    # dl_i/dp_ij = -(y / (p + eps) - (1 - y) / (1 - p + eps)) / k
    return _coef(w, p) * -(y / (p + EPS) - (1 - y) / (1 - p + EPS)) / p.shape[-1]
binary_cross_entropy = Loss("binary_cross_entropy", _binary_cross_entropy,
                            _binary_cross_entropy_vjp, "binary")


LOSSES = {loss.name: loss for loss in (mse, huber, softmax_cross_entropy, nll,
                                       binary_cross_entropy, sigmoid_binary_cross_entropy)}
