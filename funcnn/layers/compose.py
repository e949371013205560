"""Composition: Residual (x + f(x)) and serial, whose backprop is the list read backwards.

The layer contract is stated once, in funcnn/layers/__init__.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import jax
import jax.numpy as jnp

from funcnn.checks import InputError, InputTypeError
from funcnn.layers.base import Layer, _size, as_layer, row_keys


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

    @property
    def independent_rows(self):
        return self.layer.independent_rows

    @property
    def weighs_rows(self):
        return self.layer.weighs_rows

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

    def apply(self, p, x, train=False, key=None, w=None):
        f, cache = self.layer.apply(p, x, train, key, **_weights(self.layer, w))
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

    @cached_property
    def independent_rows(self):
        return all(layer.independent_rows for layer in self.layers)

    @cached_property
    def weighs_rows(self):
        return any(layer.weighs_rows for layer in self.layers)

    @cached_property
    def takes_tokens(self):                     # the first layer reads the network's input
        return bool(self.layers) and self.layers[0].takes_tokens

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

    def _keys(self, key, n):
        """Each layer's keys, one per row: row i's key split into one for every layer."""
        if key is None or not self.needs_key:
            return [None] * len(self.layers)
        split = lambda k: jax.random.split(k, len(self.layers))
        keys = jax.vmap(split)(row_keys(key, n))                # [n, layers]
        return [keys[:, i] for i in range(len(self.layers))]

    def init(self, key, input_shape, dtype):
        ins = [tuple(input_shape)] + self.shapes(input_shape)[:-1]
        keys = jax.random.split(key, len(self.layers))        # one key per layer, in order
        return tuple(l.init(k, s, dtype) for l, k, s in zip(self.layers, keys, ins))

    def apply(self, ps, x, train=False, key=None, w=None):
        if len(ps) != len(self.layers):
            raise ValueError(f"{len(ps)} params for {len(self.layers)} layers")
        caches, keys = [], self._keys(key, x.shape[0])
        for i, (layer, p, k) in enumerate(zip(self.layers, ps, keys)):
            y, cache = layer.apply(p, x, train, k, **_weights(layer, w))
            _check_output(i, layer, x, y)
            x = y
            caches.append(cache)
        return x, tuple(caches)

    def vjp(self, ps, caches, g):
        grads = []
        for i, layer in reversed(list(enumerate(self.layers))):
            if not callable(getattr(layer, "vjp", None)):
                raise InputTypeError(f"layer {i} ({layer!r}) has no vjp(p, cache, g), so it "
                                     "cannot train: write its VJP (funcnn/layers/__init__.py)")
            dp, g = layer.vjp(ps[i], caches[i], g)           # each layer pulls g back one step
            _check_gradient(i, layer, ps[i], dp)
            grads.append(dp)
        return tuple(reversed(grads)), g

    def update_state(self, ps, ps_new, caches):
        return tuple(layer.update_state(p, p_new, cache)
                     for layer, p, p_new, cache in zip(self.layers, ps, ps_new, caches))


def _weights(layer, w):
    """The keyword that passes the rows' weights on to a layer that takes them."""
    return {"w": w} if layer.weighs_rows else {}


def _check_output(i, layer, x, y):
    """A layer's apply must give what its shape() promised (checked as jax traces it)."""
    want = tuple(layer.shape(tuple(x.shape[1:])))
    if tuple(y.shape) != (x.shape[0], *want):
        raise InputError(f"layer {i} ({layer!r}): its apply returned shape {tuple(y.shape)} "
                         f"for input {tuple(x.shape)}, but its shape() says {want} per "
                         "example; make shape() and apply() agree")


def _check_gradient(i, layer, p, dp):
    """A layer's vjp must give dL/dp shaped as p: the same tree, the same leaf shapes."""
    want, got = jax.tree.structure(p), jax.tree.structure(dp)
    if want != got:
        raise InputError(f"layer {i} ({layer!r}): its vjp returned dL/dp as {got}, but its "
                         f"params are {want}; return a gradient shaped as p (check it with "
                         "funcnn.gradcheck.check_layer)")
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(p), jax.tree.leaves(dp)):
        if jnp.shape(a) != jnp.shape(b):
            raise InputError(f"layer {i} ({layer!r}): its vjp returned dL/dp"
                             f"{jax.tree_util.keystr(path)} of shape {jnp.shape(b)} for "
                             f"params of shape {jnp.shape(a)}; return a gradient shaped as p "
                             "(check it with funcnn.gradcheck.check_layer)")


def serial(*layers) -> Serial:
    """Compose layers in order: `serial(Dense(128), funcnn.math.relu, Dense(10))`. A serial is
    itself a layer, so serials nest."""
    return Serial(tuple(as_layer(l, f"serial's argument {i}") for i, l in enumerate(layers)))
