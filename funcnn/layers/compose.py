"""Composition: Residual (x + f(x)) and serial, whose backprop is the list read backwards.

The layer contract is stated once, in funcnn/layers/__init__.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import jax

from funcnn.checks import InputError
from funcnn.layers.base import Layer, _size, as_layer


# --- composition -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Residual(Layer):
    """y = x + layer(x): the layer must keep the shape. The VJP shows the two branches meet:
    dL/dx = g (through the identity) + layer's VJP of g (through the layer)."""
    layer: Layer

    def __init__(self, layer):
        object.__setattr__(self, "layer", as_layer(layer, "Residual's layer"))

    def __repr__(self):
        return f"Residual({self.layer!r})"

    @property
    def needs_key(self):
        return self.layer.needs_key

    def shape(self, input_shape):
        out = self.layer.shape(input_shape)
        if tuple(out) != tuple(input_shape):
            self._fail(f"its layer turns {input_shape} into {out}; x + layer(x) needs the same "
                       "shape")
        return out

    def workspace(self, input_shape):
        return self.layer.workspace(input_shape) + _size(input_shape)

    def init(self, key, input_shape, dtype):
        return self.layer.init(key, input_shape, dtype)

    def apply(self, p, x, train=False, key=None):
        f, cache = self.layer.apply(p, x, train, key)
        return x + f, cache

    def vjp(self, p, cache, g):
        dp, dx = self.layer.vjp(p, cache, g)
        return dp, g + dx                                   # the two branches' gradients add

    def update_state(self, p, p_new, cache):
        return self.layer.update_state(p, p_new, cache)


@dataclass(frozen=True)
class Serial(Layer):
    """Layers one after another; params and caches are tuples in layer order. Backprop is the
    list read backwards: each layer pulls g back one step."""
    layers: tuple

    def __repr__(self):
        return f"serial({', '.join(map(repr, self.layers))})"

    @cached_property
    def needs_key(self):
        return any(layer.needs_key for layer in self.layers)

    def shapes(self, input_shape) -> list:
        """Each layer's output shape, in order; an InputError names the layer that fails."""
        out, shape = [], tuple(input_shape)
        for i, layer in enumerate(self.layers):
            try:
                shape = tuple(layer.shape(shape))
            except InputError as e:
                raise InputError(f"layer {i} of {len(self.layers)} ({layer!r}), on input "
                                 f"{shape}: {e}") from None
            out.append(shape)
        return out

    def shape(self, input_shape):
        return self.shapes(input_shape)[-1] if self.layers else tuple(input_shape)

    def workspace(self, input_shape):
        ins = [tuple(input_shape)] + self.shapes(input_shape)[:-1]
        return max((l.workspace(s) for l, s in zip(self.layers, ins)), default=1)

    def _keys(self, key):
        return [None] * len(self.layers) if key is None else jax.random.split(key, len(self.layers))

    def init(self, key, input_shape, dtype):
        ins = [tuple(input_shape)] + self.shapes(input_shape)[:-1]
        keys = jax.random.split(key, len(self.layers))        # one key per layer, in order
        return tuple(l.init(k, s, dtype) for l, k, s in zip(self.layers, keys, ins))

    def apply(self, ps, x, train=False, key=None):
        caches = []
        for layer, p, k in zip(self.layers, ps, self._keys(key), strict=True):
            x, cache = layer.apply(p, x, train, k)
            caches.append(cache)
        return x, tuple(caches)

    def vjp(self, ps, caches, g):
        grads = []
        for layer, p, cache in reversed(list(zip(self.layers, ps, caches, strict=True))):
            dp, g = layer.vjp(p, cache, g)                   # each layer pulls g back one step
            grads.append(dp)
        return tuple(reversed(grads)), g

    def update_state(self, ps, ps_new, caches):
        return tuple(layer.update_state(p, p_new, cache)
                     for layer, p, p_new, cache in zip(self.layers, ps, ps_new, caches))


def serial(*layers) -> Serial:
    """Compose layers in order: `serial(Dense(128), funcnn.math.relu, Dense(10))`. A serial is
    itself a layer, so serials nest."""
    return Serial(tuple(as_layer(l, f"serial's argument {i}") for i, l in enumerate(layers)))
