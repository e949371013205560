"""Conv2D: a matrix product on the patches (or XLA's convolution), its VJP by hand.

The layer contract is stated once, in funcnn/layers/__init__.py.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from jax import lax

from funcnn import backend, initializers
from funcnn.checks import InputError, integer
from funcnn.layers.base import Layer, _hw, _pair
from funcnn.layers.windows import (_check_padding, _crop, _pad, _padding, _window_shape,
                                   patches, patches_vjp)


# --- convolution -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Conv2D(Layer):
    """A 2-D convolution (cross-correlation, as every framework computes it).

    x: f32[n, h, w, c_in] -> y: f32[n, oh, ow, filters];
    y[n, r, s, o] = b[o] + sum_{i, j, c} x_pad[n, r sh + i, s sw + j, c] w[i, j, c, o],
    p = {"w": f32[kh, kw, c_in, filters] (HWIO), "b": f32[filters]}.
    Two formulations, each with its own VJP by hand; `formulation` picks one:
    - "patches": P = patches(x_pad): f32[n oh ow, kh kw c_in], W the kernel as a
      [kh kw c_in, filters] matrix, Y = P W + b: a dense layer on the patches (im2col). On a
      CPU this is faster than XLA's convolutions and their autodiff.
    - "conv": XLA's convolution (`lax.conv_general_dilated`), which cuDNN runs on a GPU.
    - "auto" (the default): "conv" on a GPU, "patches" elsewhere. Both give the same numbers
      up to rounding; the tests hold each against jax.grad.
    """
    filters: int
    kernel: tuple
    stride: tuple = (1, 1)
    padding: object = "SAME"
    init_scheme: object = initializers.glorot()
    formulation: str = "auto"

    def __init__(self, filters, kernel, stride=1, padding="SAME", init=initializers.glorot(),
                 formulation="auto"):
        set_ = lambda k, v: object.__setattr__(self, k, v)
        set_("filters", integer("Conv2D(filters): the number of output channels", filters, 1))
        set_("kernel", _pair("Conv2D's kernel", kernel))
        set_("stride", _pair("Conv2D's stride", stride))
        set_("padding", _check_padding("Conv2D", padding))
        initializers.check_scheme(init)
        set_("init_scheme", init)
        if formulation not in ("auto", "patches", "conv"):
            raise InputError(f"Conv2D's formulation must be 'auto', 'patches' or 'conv', got "
                             f"{formulation!r}")
        set_("formulation", formulation)

    def __repr__(self):
        pad = self.padding if isinstance(self.padding, str) else f"padding {self.padding}"
        stride = self.stride[0] if self.stride[0] == self.stride[1] else _hw(self.stride)
        how = "" if self.formulation == "auto" else f", as {self.formulation}"
        return f"Conv2D({self.filters}, {_hw(self.kernel)}, stride {stride}, {pad}{how})"

    def _as(self) -> str:
        if self.formulation != "auto":
            return self.formulation
        return "conv" if jax.default_backend() == "gpu" else "patches"

    def shape(self, input_shape):
        return (*_window_shape(self, input_shape, self.kernel, self.stride, self.padding),
                self.filters)

    def workspace(self, input_shape):
        oh, ow, _ = self.shape(input_shape)
        return oh * ow * (self.kernel[0] * self.kernel[1] * input_shape[2] + self.filters)

    def init(self, key, input_shape, dtype):
        kh, kw = self.kernel
        p = self.init_scheme(key, kh * kw * input_shape[2], self.filters, dtype)
        return {"w": p["w"].reshape(kh, kw, input_shape[2], self.filters), "b": p["b"]}

    def apply(self, p, x, train=False, key=None):
        n, h, w, c = x.shape
        pads = _padding(self.padding, (h, w), self.kernel, self.stride)
        x_pad = _pad(x, pads)
        bias = p["b"].reshape(1, 1, 1, -1)
        if self._as() == "conv":
            y = lax.conv_general_dilated(x_pad, p["w"], self.stride, "VALID",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
            return y + bias, (x_pad, pads)
        oh, ow, _ = self.shape((h, w, c))
        cols = patches(x_pad, self.kernel, self.stride, (oh, ow))
        cols = cols.reshape(n * oh * ow, -1)                  # P: f32[n oh ow, kh kw c_in]
        y = cols @ p["w"].reshape(-1, self.filters)           # Y = P W (+ b)
        return y.reshape(n, oh, ow, self.filters) + bias, (cols, x.shape, pads)

    def vjp(self, p, cache, g):
        db = g.sum(axis=(0, 1, 2))                            # b is added at every position
        if self._as() == "conv":
            dw, dx = self._conv_vjp(p, cache, g)
            return {"w": dw, "b": db}, dx
        cols, (n, h, w, c), pads = cache
        oh, ow = g.shape[1:3]
        g = g.reshape(-1, self.filters)                       # dL/dY: f32[n oh ow, filters]
        w_mat = p["w"].reshape(-1, self.filters)
        # Y = P W + b  =>  dL/dW = P^T dL/dY,  dL/dP = dL/dY W^T
        dw = backend.copied(cols.T) @ g
        d_cols = (g @ w_mat.T).reshape(n, oh, ow, -1, c)     # back to [n, oh, ow, kh kw, c]
        padded = (h + sum(pads[0]), w + sum(pads[1]))
        dx = patches_vjp(d_cols, padded, self.kernel, self.stride)   # each patch back in place
        return {"w": dw.reshape(p["w"].shape), "b": db}, _crop(dx, pads, (h, w))

    def _conv_vjp(self, p, cache, g):
        """The VJP as convolutions. With x_pad: [n, H, W, c] and the stride (sh, sw):
        dL/dx_pad = g spread out by the stride (zeros between), padded by k - 1 (and by the
          rows the windows never reached), correlated with the kernel flipped in space and
          with its in and out channels swapped: every x_pad element collects the gradient of
          each output whose window covered it, times the weight that joined them;
        dL/dW[i, j, c, o] = sum_{n, r, s} x_pad[n, r sh + i, s sw + j, c] g[n, r, s, o]: x_pad
          correlated with g taken as a kernel dilated by the stride (channels as the batch)."""
        x_pad, pads = cache
        (kh, kw), (sh, sw) = self.kernel, self.stride
        _, H, W, _ = x_pad.shape
        rh, rw = (H - kh) % sh, (W - kw) % sw                 # rows, columns no window reaches
        flipped = jnp.flip(p["w"], axis=(0, 1)).swapaxes(2, 3)   # [kh, kw, filters, c_in]
        dx = lax.conv_general_dilated(g, flipped, (1, 1), ((kh - 1, kh - 1 + rh),
                                                           (kw - 1, kw - 1 + rw)),
                                      lhs_dilation=self.stride,
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))
        dw = lax.conv_general_dilated(x_pad, g, (1, 1), "VALID", rhs_dilation=self.stride,
                                      dimension_numbers=("CHWN", "IHWO", "HWNC"))
        h, w = H - sum(pads[0]), W - sum(pads[1])
        return dw[:kh, :kw], _crop(dx, pads, (h, w))
