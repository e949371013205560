"""Losses: a scalar from the network's output and the labels, and its gradient by hand.

Contract: a `Loss` holds `fn(a, y, w) -> L` and `vjp(a, y, w) -> dL/da`, where
`a: f32[n, k]` is the network's output, `y: f32[n, k]` the labels and `w: f32[n]` a weight
per example (1 for a real row, 0 for padding). Every loss is a weighted mean over the
examples, `L = sum_i w_i l_i / sum_i w_i`, so a padded batch means the same as its real rows;
`fn` also takes `w=None`, every row weighing 1 (funcnn.metrics reuses it so).
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from funcnn.math import log_softmax, softmax

Array = jax.Array


class Loss(NamedTuple):
    name: str
    fn: Callable[[Array, Array, Array], Array]    # (a, y, w) -> scalar L
    vjp: Callable[[Array, Array, Array], Array]   # (a, y, w) -> dL/da, shaped like a

    def __repr__(self) -> str:
        return self.name


def weighted_mean(per_example, w=None):
    """sum_i w_i l_i / sum_i w_i for `per_example: f32[n]`, `w: f32[n]`; the mean if w is None."""
    return per_example.mean() if w is None else (w * per_example).sum() / w.sum()


def _coef(w):
    return (w / w.sum())[:, None]                 # dL/dl_i = w_i / sum w, as a column


def _mse(a, y, w):
    return weighted_mean(((a - y) ** 2).mean(axis=-1), w)     # l_i = mean_j (a_ij - y_ij)^2
def _mse_vjp(a, y, w):
    return _coef(w) * 2.0 * (a - y) / a.shape[-1]             # dl_i/da_ij = 2 (a_ij - y_ij) / k
mse = Loss("mse", _mse, _mse_vjp)


def _softmax_cross_entropy(z, y, w):
    # l_i = -sum_j y_ij log softmax(z_i)_j = sum_j y_ij (lse(z_i) - z_ij), lse by log_softmax
    return weighted_mean(-(y * log_softmax.fn(z)).sum(axis=-1), w)
def _softmax_cross_entropy_vjp(z, y, w):
    # dl_i/dz_ij = softmax(z_i)_j sum_m y_im - y_ij   (= p - y for one-hot y)
    p = softmax.fn(z)
    return _coef(w) * (p * y.sum(axis=-1, keepdims=True) - y)
softmax_cross_entropy = Loss("softmax_cross_entropy", _softmax_cross_entropy,
                             _softmax_cross_entropy_vjp)


def _nll(log_p, y, w):
    return weighted_mean(-(y * log_p).sum(axis=-1), w)        # l_i = -sum_j y_ij log p_ij
def _nll_vjp(log_p, y, w):
    return _coef(w) * -y                                      # dl_i/d(log p_ij) = -y_ij
nll = Loss("nll", _nll, _nll_vjp)


# log(p + EPS), in the losses and the metrics alike: finite when a float32 probability
# saturates to exactly 0 or 1 (a sigmoid does from |z| ~ 18). Why 1e-7: float32 resolves 1 - p
# only to ~1e-7 (its epsilon is 2^-23 = 1.2e-7), so a saturated p then scores about as one a
# step away does (-log 1e-7 = 16.1 against 15.6); a smaller eps (metrics had 1e-8: 18.4 against
# 16.5) adds loss, and gradient 1/eps, for rounding alone. Keras's epsilon is 1e-7 too.
EPS = 1e-7


def _binary_cross_entropy(p, y, w):
    # l_i = -mean_j [y log(p + eps) + (1 - y) log(1 - p + eps)]
    return weighted_mean(-(y * jnp.log(p + EPS) + (1 - y) * jnp.log(1 - p + EPS)).mean(axis=-1),
                         w)
def _binary_cross_entropy_vjp(p, y, w):
    # dl_i/dp_ij = -(y / (p + eps) - (1 - y) / (1 - p + eps)) / k
    return _coef(w) * -(y / (p + EPS) - (1 - y) / (1 - p + EPS)) / p.shape[-1]
binary_cross_entropy = Loss("binary_cross_entropy", _binary_cross_entropy,
                            _binary_cross_entropy_vjp)


LOSSES = {loss.name: loss for loss in (mse, softmax_cross_entropy, nll, binary_cross_entropy)}
