"""The layer protocol every layer follows, and an activation of funcnn.math as a layer.

The layer contract is stated once, in funcnn/layers/__init__.py.
"""
from __future__ import annotations

import math as _math
from dataclasses import dataclass


import jax

from funcnn import math as fmath
from funcnn.checks import InputError, InputTypeError, integer


class Layer:
    """The defaults every layer shares: no numbers, no key, no state, and (safe for a layer of
    your own) rows that may depend on each other. The contract, with what each attribute
    changes, is in funcnn/layers/__init__.py."""
    needs_key = False                    # does apply(train=True) draw random numbers?
    independent_rows = False             # is row i's output a function of row i alone?
    weighs_rows = False                  # does apply(train=True) take the rows' weights w=?
    takes_tokens = False                 # does apply take integer tokens (not numbers) as x?

    def init(self, key, input_shape, dtype):
        del key, input_shape, dtype
        return ()

    def update_state(self, p, p_new, cache):
        del p, cache
        return p_new

    def workspace(self, input_shape) -> int:
        """Floats one example needs inside this layer (evaluation splits big inputs by it)."""
        return max(_size(input_shape), _size(self.shape(input_shape)))

    def _fail(self, message):
        raise InputError(f"{self!r}: {message}")


def _size(shape) -> int:
    return _math.prod(shape)


def row_keys(key, n: int):
    """The keys a layer draws from in training: one per row, `key[n]` (None stays None). A
    single key is split into n; an array of n keys (what `serial` passes on) is kept. Row i
    draws from its own key, so its draw is the same whatever rows share its batch."""
    if key is None or key.ndim == 1:
        return key
    return jax.random.split(key, n)


def _pair(name, v, least=1) -> tuple[int, int]:
    """An int or a pair of ints -> a pair: 3 -> (3, 3); (2, 1) -> (2, 1)."""
    vs = (v, v) if not isinstance(v, (tuple, list)) else tuple(v)
    if len(vs) != 2:
        raise InputError(f"{name} must be an int or a pair of ints, got {v!r}")
    return tuple(integer(name, u, least) for u in vs)


def _hw(a) -> str:
    return f"{a[0]}x{a[1]}"


# --- an activation as a layer ----------------------------------------------------------------

@dataclass(frozen=True)
class Act(Layer):
    """`funcnn.math`'s activation as a layer: a = act(z) on the last axis, no numbers."""
    act: fmath.Activation
    independent_rows = True

    def __repr__(self):
        return self.act.name

    def shape(self, input_shape):
        return input_shape

    def apply(self, p, x, train=False, key=None):
        a = self.act.fn(x)
        return a, (x, a)

    def vjp(self, p, cache, g):
        z, a = cache
        return (), self.act.vjp(z, a, g)           # dL/dz = g * da/dz (math.py's formula)


def as_layer(layer, where: str = "layer") -> Layer:
    """A layer as it is; an activation of funcnn.math wrapped as `Act`; anything else refused."""
    if isinstance(layer, fmath.Activation):
        return Act(layer)
    if isinstance(layer, Layer):
        return layer
    raise InputTypeError(f"{where} must be a layer of funcnn.layers (Dense, Conv2D, ...) or an "
                         f"activation such as funcnn.math.relu, got {type(layer).__name__} "
                         f"{layer!r}")
