"""MaxPool2D and AvgPool2D over windows, their VJPs by hand.

The layer contract is stated once, in funcnn/layers/__init__.py.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
from funcnn.layers.base import Layer, _hw, _pair
from funcnn.layers.windows import (_check_padding, _crop, _pad, _padding, _window_shape,
                                   patches, patches_vjp)


# --- pools -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Pool(Layer):
    window: tuple
    stride: tuple
    padding: object

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
        n, h, w, c = x.shape
        pads = _padding(self.padding, (h, w), self.window, self.stride)
        oh, ow, _ = self.shape((h, w, c))
        return patches(_pad(x, pads, fill), self.window, self.stride, (oh, ow)), pads

    def _back(self, d_patches, x_shape, pads):
        _, h, w, _ = x_shape
        padded = (h + sum(pads[0]), w + sum(pads[1]))
        return _crop(patches_vjp(d_patches, padded, self.window, self.stride), pads, (h, w))


class MaxPool2D(_Pool):
    """The largest value in each window: x: f32[n, h, w, c] -> f32[n, oh, ow, c]; the stride
    defaults to the window. The gradient of a window goes to its largest element; at a tie, to
    the first of them in row-major order within the window (top row first, then left to
    right), so it is never split. Padding ("SAME" or explicit) is never the largest."""

    def apply(self, p, x, train=False, key=None):
        cols, pads = self._patches(x, jnp.finfo(x.dtype).min)   # f32[n, oh, ow, kh kw, c]
        first = jnp.argmax(cols, axis=3)                         # the first largest offset
        # y = the element at `first` (not jnp.max: under jit, XLA may round the max and the
        # patches differently, and autodiff of max then finds no element equal to it)
        y = jnp.take_along_axis(cols, first[:, :, :, None, :], axis=3)[:, :, :, 0, :]
        return y, (first, x.shape, pads, cols.shape[3])

    def vjp(self, p, cache, g):
        first, x_shape, pads, k = cache
        # y = x[argmax]  =>  dL/dx = g at the argmax of each window, 0 elsewhere
        hit = jnp.arange(k)[None, None, None, :, None] == first[:, :, :, None, :]
        return (), self._back(jnp.where(hit, g[:, :, :, None, :], 0.0), x_shape, pads)


class AvgPool2D(_Pool):
    """The mean of each window: x: f32[n, h, w, c] -> f32[n, oh, ow, c]; the stride defaults
    to the window. With padding, the zeros count in the mean (PyTorch's default)."""

    def apply(self, p, x, train=False, key=None):
        cols, pads = self._patches(x, 0.0)
        return cols.mean(axis=3), (x.shape, pads, cols.shape[3])

    def vjp(self, p, cache, g):
        x_shape, pads, k = cache
        # y = (1/k) sum of the window  =>  each of its k elements gets g / k
        spread = jnp.broadcast_to(g[:, :, :, None, :] / k, (*g.shape[:3], k, g.shape[3]))
        return (), self._back(spread, x_shape, pads)
