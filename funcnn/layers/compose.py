"""Composition: Residual (x + f(x)) and serial, whose backprop is the list read backwards.

The layer contract is stated once, in funcnn/layers/__init__.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import jax
import jax.numpy as jnp

from funcnn.checks import InputError
from funcnn.layers.base import Layer, _size, as_layer, row_keys
from funcnn.layers.conv import Conv2D
from funcnn.layers.pool import _Pool
from funcnn.layers.windows import CHWN, NHWC, _swap_nc


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

    @property
    def takes_chwn(self):
        return self.layer.takes_chwn

    def in_layout(self, layout):
        return Residual(self.layer.in_layout(layout))

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
    list read backwards: each layer pulls g back one step.

    Images come in and go out NHWC. With `image_layout="CHWN"` (PyTorch's `channels_last` in
    spirit: a memory order you opt into), each run of layers that can compute on CHWN images
    (Conv2D, the pools, the norms, Dropout, an elementwise activation, a Residual or serial of
    those) and holds a convolution or a pool does so: its input is transposed to CHWN once
    and its output back. The numbers are the same up to rounding; only the time differs, and
    not always in one direction (windows.py and the README give the measurements)."""
    layers: tuple
    image_layout: str = NHWC
    layout: str = NHWC                   # CHWN: a run inside another serial (its input too)

    def __repr__(self):
        order = "" if self.image_layout == NHWC else f", image_layout={self.image_layout!r}"
        return f"serial({', '.join(map(repr, self.layers))}{order})"

    @cached_property
    def needs_key(self):
        return any(layer.needs_key for layer in self.layers)

    @cached_property
    def independent_rows(self):
        return all(layer.independent_rows for layer in self.layers)

    @cached_property
    def weighs_rows(self):
        return any(layer.weighs_rows for layer in self.layers)

    @property
    def takes_chwn(self):
        return all(layer.takes_chwn for layer in self.layers)

    def in_layout(self, layout):
        return Serial(tuple(l.in_layout(layout) for l in self.layers), self.image_layout, layout)

    def _groups(self):
        """The layers in order, as (first, stop, chwn): layers[first:stop] compute on CHWN
        images when chwn; each other layer is a group of its own."""
        if self.layout == CHWN:                              # inside a run: all of it is
            return [(0, len(self.layers), False)]
        groups, i = [], 0
        while i < len(self.layers):
            stop = i
            while stop < len(self.layers) and self.layers[stop].takes_chwn:
                stop += 1
            if stop > i and self._runs_chwn(self.layers[i:stop]):
                groups.append((i, stop, True))
                i = stop
            else:
                groups.append((i, i + 1, False))
                i += 1
        return groups

    def _runs_chwn(self, run):
        """Should this run of CHWN-capable layers compute on CHWN images? Only image runs: those
        with a convolution or a pool (which need images, and the rest keep the shape)."""
        return self.image_layout == CHWN and any(isinstance(l, (Conv2D, _Pool))
                                                 for l in _sublayers(run))

    def _layers(self):
        """(layer as it computes, its index, chwn transposes before / after it)."""
        for first, stop, chwn in self._groups():
            for i in range(first, stop):
                layer = self.layers[i].in_layout(CHWN) if chwn else self.layers[i]
                yield layer, i, chwn and i == first, chwn and i == stop - 1

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
        caches, keys = [], self._keys(key, x.shape[-1 if self.layout == CHWN else 0])
        for layer, i, enter, leave in self._layers():
            x = _swap_nc(x) if enter else x
            x_in = x
            x, cache = layer.apply(ps[i], x, train, keys[i], **_weights(layer, w))
            if self.layout == NHWC and not (enter or leave or _inside_chwn(self, i)):
                _check_output(i, layer, x_in, x)
            x = _swap_nc(x) if leave else x
            caches.append(cache)
        return x, tuple(caches)

    def vjp(self, ps, caches, g):
        grads = []
        for layer, i, enter, leave in reversed(list(self._layers())):
            g = _swap_nc(g) if leave else g                  # a transpose's VJP: its inverse
            dp, g = layer.vjp(ps[i], caches[i], g)           # each layer pulls g back one step
            _check_gradient(i, layer, ps[i], dp)
            g = _swap_nc(g) if enter else g
            grads.append(dp)
        return tuple(reversed(grads)), g

    def update_state(self, ps, ps_new, caches):
        return tuple(layer.update_state(p, p_new, cache)
                     for layer, p, p_new, cache in zip(self.layers, ps, ps_new, caches))


def _weights(layer, w):
    """The keyword that passes the rows' weights on to a layer that takes them."""
    return {"w": w} if layer.weighs_rows else {}


def _inside_chwn(serial, i):
    return any(chwn and first <= i < stop for first, stop, chwn in serial._groups())


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


def _sublayers(layers):
    """Every layer in `layers`, and inside each Residual and serial, depth first."""
    for layer in layers:
        yield layer
        if isinstance(layer, Residual):
            yield from _sublayers([layer.layer])
        elif isinstance(layer, Serial):
            yield from _sublayers(layer.layers)


def serial(*layers, image_layout=NHWC) -> Serial:
    """Compose layers in order: `serial(Dense(128), funcnn.math.relu, Dense(10))`. A serial is
    itself a layer, so serials nest. `image_layout` ("NHWC", the default, or "CHWN") picks the
    axis order its image layers compute in (see Serial); the result is the same."""
    if image_layout not in (NHWC, CHWN):
        raise InputError(f"serial's image_layout must be 'NHWC' or 'CHWN', got "
                         f"{image_layout!r}")
    return Serial(tuple(as_layer(l, f"serial's argument {i}") for i, l in enumerate(layers)),
                  image_layout)
