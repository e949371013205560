"""BatchNorm and LayerNorm: normalised activations, their VJPs by hand.

The layer contract is stated once, in funcnn/layers/__init__.py.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
from jax import lax

from funcnn.checks import InputError, number
from funcnn.layers.base import Layer, _size


# --- normalisation ---------------------------------------------------------------------------

def _per_channel(v, ndim):
    """f32[c] -> f32[1, ..., 1, c]: broadcast over every axis but the last, said explicitly."""
    return v.reshape((1,) * (ndim - 1) + (-1,))


def _normalized_vjp(g, x_hat, inv, axes, m=None):
    """dL/dx of x_hat = (x - mean(x)) / sqrt(var(x) + eps) over `axes`, given g = dL/dx_hat:
    dL/dx = inv (g - mean(g) - x_hat mean(g x_hat)), inv = 1 / sqrt(var + eps)
    (the mean's and the variance's paths are the two subtracted terms). With a 0/1 mask m of
    the values counted in mean and var: dL/dx = inv (g - m (mean_m(g) + x_hat mean_m(g x_hat)))
    (a value not counted reaches the loss only through its own x_hat)."""
    if m is None:
        mean = lambda v: v.mean(axis=axes, keepdims=True)
        return inv * (g - mean(g) - x_hat * mean(g * x_hat))
    mean = lambda v: (m * v).sum(axis=axes, keepdims=True) / m.sum(axis=axes, keepdims=True)
    return inv * (g - m * (mean(g) + x_hat * mean(g * x_hat)))


def _counted(w, x):
    """The rows of weight > 0 as a 0/1 mask shaped like x (1 where a value counts)."""
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    return jnp.broadcast_to((w > 0).astype(x.dtype).reshape(shape), x.shape)


@dataclass(frozen=True)
class BatchNorm(Layer):
    """Normalises each channel (the last axis) over the batch and every other axis, then
    scales and shifts it: y = gamma (x - mu) / sqrt(var + eps) + beta.

    Training uses the batch's mu and var (biased). Evaluation uses the running mean and
    variance kept in params: p = {"gamma", "beta", "mean", "var"}, each f32[c]. Each training
    step moves them, mean <- (1 - momentum) mean + momentum mu (var likewise, with the
    unbiased batch variance, as PyTorch does). They get a zero gradient: `fit` and `grad_step`
    set them from the batch after the optimizer's step (`update_state`), so no optimizer or
    weight decay moves them. In training, `w: f32[n]` (the rows' weights) says which rows
    count: mu and var are over the rows of weight > 0, so padding rows (a last partial batch's,
    those `fit(mesh=...)` adds) change nothing. A training batch needs 2 rows or more."""
    momentum: float = 0.1
    eps: float = 1e-5
    weighs_rows = True                   # mu and var over the rows of weight > 0

    def __post_init__(self):                  # keep plain floats: equal layers hash alike
        momentum = number("BatchNorm's momentum", self.momentum)
        if not 0.0 < momentum <= 1.0:
            raise InputError(f"BatchNorm's momentum must be in (0, 1]: the weight of each "
                             f"batch in the running statistics (PyTorch's 0.1); got {momentum}")
        object.__setattr__(self, "momentum", momentum)
        object.__setattr__(self, "eps", number("BatchNorm's eps", self.eps, positive=True))

    def __repr__(self):
        return "BatchNorm"

    def shape(self, input_shape):
        return input_shape

    def init(self, key, input_shape, dtype):
        c = input_shape[-1]
        return {"gamma": jnp.ones(c, dtype), "beta": jnp.zeros(c, dtype),
                "mean": jnp.zeros(c, dtype), "var": jnp.ones(c, dtype)}

    def apply(self, p, x, train=False, key=None, w=None):
        axes = tuple(range(x.ndim - 1))                      # all but the channels
        c = lambda v: _per_channel(v, x.ndim)
        m = None
        if train:
            if x.shape[0] < 2:
                self._fail("training needs a batch of 2 rows or more: with one, the batch's "
                           "mean is the row itself and every output is beta; use a larger "
                           "batch_size")
            if w is None:
                mu = x.mean(axis=axes, keepdims=True)
                var = ((x - mu) ** 2).mean(axis=axes, keepdims=True)
                count = _size(x.shape) // x.shape[-1]
            else:                                            # over the rows of weight > 0
                m = _counted(w, x)
                count = m.sum(axis=axes, keepdims=True)
                mu = (m * x).sum(axis=axes, keepdims=True) / count
                var = (m * (x - mu) ** 2).sum(axis=axes, keepdims=True) / count
                count = count.reshape(-1)
            stats = (mu.reshape(-1), var.reshape(-1) * count / jnp.maximum(count - 1, 1))
        else:
            # running statistics are state, not parameters: no gradient flows into them
            # (stop_gradient says so to jax.grad, the referee, too)
            mu, var, stats = c(lax.stop_gradient(p["mean"])), c(lax.stop_gradient(p["var"])), None
        inv = lax.rsqrt(var + self.eps)
        x_hat = (x - mu) * inv
        return c(p["gamma"]) * x_hat + c(p["beta"]), (x_hat, inv, stats, m)

    def vjp(self, p, cache, g):
        x_hat, inv, stats, m = cache
        axes = tuple(range(g.ndim - 1))
        d = {"gamma": (g * x_hat).sum(axis=axes), "beta": g.sum(axis=axes),   # y = gamma x_hat + beta
             "mean": jnp.zeros_like(p["mean"]), "var": jnp.zeros_like(p["var"])}
        g_hat = g * _per_channel(p["gamma"], g.ndim)         # dL/dx_hat
        if stats is None:                                    # evaluation: mu, var are constants
            return d, g_hat * inv
        return d, _normalized_vjp(g_hat, x_hat, inv, axes, m)   # training: mu, var depend on x

    def update_state(self, p, p_new, cache):
        stats = cache[2]
        if stats is None:
            return p_new
        m = self.momentum
        mu, var = stats
        return {**p_new, "mean": (1 - m) * p["mean"] + m * mu,
                "var": (1 - m) * p["var"] + m * var}


@dataclass(frozen=True)
class LayerNorm(Layer):
    """Normalises each example over its last axis (its features, or an image's channels at
    each pixel), then scales and shifts: y = gamma (x - mu) / sqrt(var + eps) + beta, with
    p = {"gamma", "beta"}: f32[d]. The same in training and evaluation."""
    eps: float = 1e-5
    independent_rows = True

    def __post_init__(self):
        object.__setattr__(self, "eps", number("LayerNorm's eps", self.eps, positive=True))

    def __repr__(self):
        return "LayerNorm"

    def shape(self, input_shape):
        return input_shape

    def init(self, key, input_shape, dtype):
        d = input_shape[-1]
        return {"gamma": jnp.ones(d, dtype), "beta": jnp.zeros(d, dtype)}

    def apply(self, p, x, train=False, key=None):
        mu = x.mean(axis=-1, keepdims=True)
        inv = lax.rsqrt(((x - mu) ** 2).mean(axis=-1, keepdims=True) + self.eps)
        x_hat = (x - mu) * inv
        c = lambda v: _per_channel(v, x.ndim)
        return c(p["gamma"]) * x_hat + c(p["beta"]), (x_hat, inv)

    def vjp(self, p, cache, g):
        x_hat, inv = cache
        axes = tuple(range(g.ndim - 1))
        d = {"gamma": (g * x_hat).sum(axis=axes), "beta": g.sum(axis=axes)}
        gamma = _per_channel(p["gamma"], g.ndim)
        return d, _normalized_vjp(g * gamma, x_hat, inv, -1)
