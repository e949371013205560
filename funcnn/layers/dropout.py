"""Dropout: a keyed mask in training, the identity in evaluation.

The layer contract is stated once, in funcnn/layers/__init__.py.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from funcnn.checks import InputError, number
from funcnn.layers.base import Layer, row_keys


# --- dropout ---------------------------------------------------------------------------------

def check_rate(name: str, rate, what: str) -> float:
    """A dropout rate: a number in [0, 1), the probability of dropping `what`."""
    rate = number(f"{name}: the probability of dropping {what}", rate)
    if not 0.0 <= rate < 1.0:
        raise InputError(f"{name} must be in [0, 1): the probability of dropping {what} (0.5 "
                         f"drops half), got {rate}")
    return rate


@dataclass(frozen=True)
class Dropout(Layer):
    """Drops each unit with probability `rate` in training (as PyTorch and Keras mean it; stax's
    `Dropout(rate)` keeps with that probability instead) and scales the kept ones by
    1 / (1 - rate), so a unit's expected value does not change; evaluation is the identity.
    Row i's mask comes from row i's key (`key: key[n]`, or one key split into n): the same
    key gives the same mask, whatever rows share the batch."""
    rate: float
    independent_rows = True              # row i's mask comes from row i's key

    def __init__(self, rate):
        object.__setattr__(self, "rate", check_rate("Dropout(rate)", rate, "a unit"))

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
        draw = lambda k: jax.random.bernoulli(k, 1.0 - self.rate, x.shape[1:])
        keep = jax.vmap(draw)(row_keys(key, x.shape[0]))     # row i's mask from row i's key
        scale = jnp.where(keep, 1.0 / (1.0 - self.rate), 0.0).astype(x.dtype)
        return x * scale, scale                              # y = x m / (1 - rate)

    def vjp(self, p, cache, g):
        return (), g if cache is None else g * cache         # dL/dx = g m / (1 - rate)
