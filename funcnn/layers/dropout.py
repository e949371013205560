"""Dropout: a keyed mask in training, the identity in evaluation.

The layer contract is stated once, in funcnn/layers/__init__.py.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from funcnn.checks import InputError, number
from funcnn.layers.base import Layer, row_keys
from funcnn.layers.windows import CHWN, NHWC, _swap_nc


# --- dropout ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Dropout(Layer):
    """Drops each unit with probability `rate` in training (as PyTorch and Keras mean it; stax's
    `Dropout(rate)` keeps with that probability instead) and scales the kept ones by
    1 / (1 - rate), so a unit's expected value does not change; evaluation is the identity.
    Row i's mask comes from row i's key (`key: key[n]`, or one key split into n): the same
    key gives the same mask, whatever rows share the batch."""
    rate: float
    layout: str = NHWC                   # the axis order of an image x; set by serial
    takes_chwn = True
    independent_rows = True              # row i's mask comes from row i's key

    def __init__(self, rate):
        rate = number("Dropout(rate): the probability of dropping a unit", rate)
        if not 0.0 <= rate < 1.0:
            raise InputError(f"Dropout(rate) must be in [0, 1): the probability of dropping a "
                             f"unit (0.5 drops half), got {rate}")
        object.__setattr__(self, "rate", rate)

    @property
    def needs_key(self):
        return self.rate > 0

    def __repr__(self):
        return f"Dropout({self.rate:g})"

    def shape(self, input_shape):
        return input_shape

    def apply(self, p, x, train=False, key=None):
        if not train or self.rate == 0:
            return x, None                                   # evaluation: y = x
        chwn = self.layout == CHWN and x.ndim == 4           # rows last: the NHWC mask, moved
        n = x.shape[-1] if chwn else x.shape[0]
        row_shape = (*x.shape[1:3], x.shape[0]) if chwn else x.shape[1:]
        draw = lambda k: jax.random.bernoulli(k, 1.0 - self.rate, row_shape)
        keep = jax.vmap(draw)(row_keys(key, n))              # row i's mask from row i's key
        keep = _swap_nc(keep) if chwn else keep
        scale = jnp.where(keep, 1.0 / (1.0 - self.rate), 0.0).astype(x.dtype)
        return x * scale, scale                              # y = x m / (1 - rate)

    def vjp(self, p, cache, g):
        return (), g if cache is None else g * cache         # dL/dx = g m / (1 - rate)
