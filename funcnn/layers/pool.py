"""MaxPool2D and AvgPool2D over windows, their VJPs by hand.

The layer contract is stated once, in funcnn/layers/__init__.py.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
from jax import lax

from funcnn.layers.base import Layer, _hw, _pair
from funcnn.layers.windows import (_check_padding, _crop, _pad, _padding, _window_shape,
                                   patches, patches_vjp)


# --- pools -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Pool(Layer):
    window: tuple
    stride: tuple
    padding: object
    independent_rows = True

    def __init__(self, window=(2, 2), stride=None, padding="VALID"):
        name = type(self).__name__
        set_ = lambda k, v: object.__setattr__(self, k, v)
        set_("window", _pair(f"{name}'s window", window))
        set_("stride", self.window if stride is None else _pair(f"{name}'s stride", stride))
        set_("padding", _check_padding(name, padding))

    def __repr__(self):
        stride = "" if self.stride == self.window else f", stride {_hw(self.stride)}"
        pad = "" if self.padding == "VALID" else f", {self.padding}"
        return f"{type(self).__name__}({_hw(self.window)}{stride}{pad})"

    def shape(self, input_shape):
        return (*_window_shape(self, input_shape, self.window, self.stride, self.padding),
                input_shape[2])

    def _patches(self, x, fill):
        h, w, c = x.shape[1:]
        pads = _padding(self.padding, (h, w), self.window, self.stride)
        oh, ow, _ = self.shape((h, w, c))
        return patches(_pad(x, pads, fill), self.window, self.stride, (oh, ow)), pads

    # Windows that tile the input (stride = window, the usual 2x2 pool) need no patches: the
    # kh kw strided views x[:, i::kh, j::kw] are the windows' elements, and the VJP spreads g
    # over each tile (a broadcast to f32[n, oh, kh, ow, kw, c] and a reshape), with no pad or
    # stack. Each is one loop for XLA. The broadcast matters: XLA's CPU backend refuses to fuse
    # a producer it would evaluate many times, and kh kw selects of g (one per offset) made it
    # write out the nine pads of the next convolution's VJP (docs/performance.md).
    def _tiles(self):
        return self.stride == self.window

    def _views(self, x, fill):
        """The kh kw views f32[n, oh, ow, c] of the padded x, row-major; the pads."""
        h, w, c = x.shape[1:]
        pads = _padding(self.padding, (h, w), self.window, self.stride)
        oh, ow, _ = self.shape((h, w, c))
        (kh, kw), x = self.window, _pad(x, pads, fill)
        return [x[:, i:i + kh * oh:kh, j:j + kw * ow:kw]
                for i in range(kh) for j in range(kw)], pads

    def _untile(self, d_tiles, x_shape, pads):
        """The VJP of _views: d_tiles: f32[n, oh, kh, ow, kw, c], the gradient of each view
        (offset (i, j) at kh's i and kw's j) -> dL/dx, the padding (and the rows and columns
        no window covered) cut off or filled with 0."""
        (kh, kw), (h, w) = self.window, x_shape[1:3]
        oh, ow = d_tiles.shape[1], d_tiles.shape[3]
        dx = d_tiles.reshape(x_shape[0], oh * kh, ow * kw, x_shape[3])
        (top, bottom), (left, right) = pads
        return lax.pad(dx, jnp.zeros((), dx.dtype),
                       ((0, 0, 0), (-top, h + top + bottom - oh * kh - bottom, 0),
                        (-left, w + left + right - ow * kw - right, 0), (0, 0, 0)))

    def _back(self, d_patches, x_shape, pads):
        h, w = x_shape[1:3]
        padded = (h + sum(pads[0]), w + sum(pads[1]))
        return _crop(patches_vjp(d_patches, padded, self.window, self.stride), pads, (h, w))


def _spread(a):
    """f32[n, oh, ow, c] -> f32[n, oh, 1, ow, 1, c]: one value for every element of a tile."""
    return a[:, :, None, :, None]


class MaxPool2D(_Pool):
    """The largest value in each window: x: f32[n, h, w, c] -> f32[n, oh, ow, c]; the stride
    defaults to the window. The gradient of a window goes to its largest element; at a tie, to
    the first of them in row-major order within the window (top row first, then left to
    right), so it is never split. Padding ("SAME" or explicit) is never the largest."""

    def apply(self, p, x, train=False, key=None):
        if self._tiles():
            views, pads = self._views(x, jnp.finfo(x.dtype).min)
            # the first largest: a later offset wins only when strictly larger (or the first
            # NaN, as argmax has it); y is that element itself
            index = jnp.int8 if len(views) <= 127 else jnp.int32    # a quarter of the bytes
            y, first = views[0], jnp.zeros(views[0].shape, index)
            for t, v in enumerate(views[1:], 1):
                wins = (v > y) | (jnp.isnan(v) & ~jnp.isnan(y))
                y, first = jnp.where(wins, v, y), jnp.where(wins, index(t), first)
            return y, (first, x.shape, pads, len(views))
        cols, pads = self._patches(x, jnp.finfo(x.dtype).min)   # f32[n, oh, ow, kh kw, c]
        first = jnp.argmax(cols, axis=3)                         # the first largest offset
        # y = the element at `first` (not jnp.max: under jit, XLA may round the max and the
        # patches differently, and autodiff of max then finds no element equal to it)
        y = jnp.take_along_axis(cols, first[:, :, :, None], axis=3).squeeze(3)
        return y, (first, x.shape, pads, cols.shape[3])

    def vjp(self, p, cache, g):
        first, x_shape, pads, k = cache
        # y = x[argmax]  =>  dL/dx = g at the argmax of each window, 0 elsewhere
        if self._tiles():
            kh, kw = self.window
            offset = (jnp.arange(kh)[:, None] * kw + jnp.arange(kw)[None, :]).reshape(
                1, 1, kh, 1, kw, 1)
            return (), self._untile(jnp.where(_spread(first) == offset, _spread(g), 0.0),
                                    x_shape, pads)
        hit = jnp.arange(k).reshape(1, 1, 1, k, 1) == first[:, :, :, None]   # [n, oh, ow, k, c]
        return (), self._back(jnp.where(hit, g[:, :, :, None], 0.0), x_shape, pads)


class AvgPool2D(_Pool):
    """The mean of each window: x: f32[n, h, w, c] -> f32[n, oh, ow, c]; the stride defaults
    to the window. With padding, the zeros count in the mean (PyTorch's default)."""

    def apply(self, p, x, train=False, key=None):
        if self._tiles():
            views, pads = self._views(x, 0.0)
            return sum(views[1:], views[0]) / len(views), (x.shape, pads, len(views))
        cols, pads = self._patches(x, 0.0)                  # f32[n, oh, ow, kh kw, c]
        return cols.mean(axis=3), (x.shape, pads, cols.shape[3])

    def vjp(self, p, cache, g):
        x_shape, pads, k = cache
        # y = (1/k) sum of the window  =>  each of its k elements gets g / k
        if self._tiles():
            (kh, kw), (n, oh, ow, c) = self.window, g.shape
            tiles = jnp.broadcast_to(_spread(g / k), (n, oh, kh, ow, kw, c))
            return (), self._untile(tiles, x_shape, pads)
        n, oh, ow, c = g.shape
        spread = jnp.broadcast_to((g / k)[:, :, :, None], (n, oh, ow, k, c))
        return (), self._back(spread, x_shape, pads)
