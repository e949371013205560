"""Conv2D: a matrix product on the patches, its VJP by hand; Winograd's (winograd.py) and XLA's
(xla_conv.py) formulations beside it, chosen by one rule (`Conv2D._as`).

The layer contract is stated once, in funcnn/layers/__init__.py.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax

from funcnn import backend, initializers
from funcnn.checks import InputError, integer
from funcnn.layers import winograd, xla_conv
from funcnn.layers.base import Layer, _hw, _pair
from funcnn.layers.windows import (_check_padding, _crop, _pad, _padding, _window_shape,
                                   patches, patches_vjp)


# --- convolution -----------------------------------------------------------------------------

# "auto" on a CPU: Winograd's F(2x2, 3x3) for a 3x3 stride-1 convolution with at least this many
# input channels, the patch product below it: with fewer, Winograd's 16 products of a few
# channels run far below the machine's matmul rate (docs/performance.md).
WINOGRAD_MIN_CHANNELS = 32

@dataclass(frozen=True)
class Conv2D(Layer):
    """A 2-D convolution (cross-correlation, as every framework computes it).

    x: f32[n, h, w, c_in] -> y: f32[n, oh, ow, filters];
    y[n, r, s, o] = b[o] + sum_{i, j, c} x_pad[n, r sh + i, s sw + j, c] w[i, j, c, o],
    p = {"w": f32[kh, kw, c_in, filters] (HWIO), "b": f32[filters]}.
    Three formulations, each with its own VJP by hand; `formulation` picks one:
    - "patches": P = patches(x_pad): f32[n oh ow, kh kw c_in], W the kernel as a
      [kh kw c_in, filters] matrix, Y = P W + b: a dense layer on the patches (im2col). On a
      CPU this is faster than XLA's convolutions and their autodiff.
    - "conv": XLA's convolution (`lax.conv_general_dilated`, xla_conv.py), which cuDNN runs
      on a GPU.
    - "winograd": Winograd's F(2x2, 3x3) (winograd.py), 3x3 kernels at stride 1 only: 2.25x
      fewer multiplications than the patch product, and a transformed input 4x the input
      where the patches are 9x.
    - "auto" (the default): "conv" on a GPU; elsewhere "winograd" for a 3x3 stride-1 kernel
      on at least WINOGRAD_MIN_CHANNELS input channels, "patches" otherwise. All give the same
      numbers up to rounding; the tests hold each against jax.grad.
    """
    filters: int
    kernel: tuple
    stride: tuple = (1, 1)
    padding: object = "SAME"
    init_scheme: object = initializers.glorot()
    formulation: str = "auto"
    independent_rows = True

    def __init__(self, filters, kernel, stride=1, padding="SAME", init=initializers.glorot(),
                 formulation="auto"):
        set_ = lambda k, v: object.__setattr__(self, k, v)
        set_("filters", integer("Conv2D(filters): the number of output channels", filters, 1))
        set_("kernel", _pair("Conv2D's kernel", kernel))
        set_("stride", _pair("Conv2D's stride", stride))
        set_("padding", _check_padding("Conv2D", padding))
        initializers.check_scheme(init)
        set_("init_scheme", init)
        if formulation not in ("auto", "patches", "conv", "winograd"):
            raise InputError(f"Conv2D's formulation must be 'auto', 'patches', 'conv' or "
                             f"'winograd', got {formulation!r}")
        if formulation == "winograd" and not self._winograd_fits():
            raise InputError(f"Conv2D's formulation 'winograd' (F(2x2, 3x3)) needs a 3x3 kernel "
                             f"at stride 1, got kernel {_hw(self.kernel)}, stride "
                             f"{_hw(self.stride)}; use 'patches' or 'conv'")
        set_("formulation", formulation)

    def __repr__(self):
        pad = self.padding if isinstance(self.padding, str) else f"padding {self.padding}"
        stride = self.stride[0] if self.stride[0] == self.stride[1] else _hw(self.stride)
        how = "" if self.formulation == "auto" else f", as {self.formulation}"
        return f"Conv2D({self.filters}, {_hw(self.kernel)}, stride {stride}, {pad}{how})"

    def _winograd_fits(self) -> bool:
        """Winograd's F(2x2, 3x3) computes a 3x3 kernel at stride 1 only."""
        return (self.kernel, self.stride) == ((3, 3), (1, 1))

    def _as(self, c_in: int) -> str:
        """The formulation this layer computes with, for c_in input channels."""
        if self.formulation != "auto":
            return self.formulation
        if jax.default_backend() == "gpu":
            return "conv"
        wide = c_in >= WINOGRAD_MIN_CHANNELS
        return "winograd" if wide and self._winograd_fits() else "patches"

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
        h, w, c = x.shape[1:]
        pads = _padding(self.padding, (h, w), self.kernel, self.stride)
        bias = p["b"].reshape(1, 1, 1, -1)
        how = self._as(p["w"].shape[2])
        if how == "conv":                                     # XLA's convolution
            y, x_pad = xla_conv.conv(_pad(x, pads), p["w"], self.stride)
            return y + bias, (x_pad, pads)
        oh, ow, _ = self.shape((h, w, c))
        if how == "winograd":                                 # Winograd's F(2x2, 3x3)
            y, cache = winograd.conv(x, p["w"], pads, (oh, ow))
            return y + bias, cache
        w_mat = p["w"].reshape(-1, self.filters)              # W: f32[kh kw c_in, filters]
        cols = patches(_pad(x, pads), self.kernel, self.stride, (oh, ow))
        cols = cols.reshape(-1, w_mat.shape[0])               # P: f32[n oh ow, kh kw c_in]
        y = (cols @ w_mat).reshape(-1, oh, ow, self.filters)  # Y = P W (+ b)
        return y + bias, (cols, x.shape, pads)

    def vjp(self, p, cache, g):
        db = g.sum(axis=(0, 1, 2))                           # b is added at every position
        how = self._as(p["w"].shape[2])
        if how == "conv":
            x_pad, pads = cache
            dw, dx = xla_conv.conv_vjp(p["w"], x_pad, g, self.stride)
            h, w = x_pad.shape[1] - sum(pads[0]), x_pad.shape[2] - sum(pads[1])
            return {"w": dw, "b": db}, _crop(dx, pads, (h, w))
        if how == "winograd":
            dw, dx = winograd.conv_vjp(p["w"], cache, g)
            return {"w": dw, "b": db}, dx
        cols, x_shape, pads = cache
        h, w, c = x_shape[1:]
        oh, ow = g.shape[1:3]
        w_mat = p["w"].reshape(-1, self.filters)
        g = g.reshape(-1, self.filters)                       # dL/dY: f32[n oh ow, filters]
        # Y = P W + b  =>  dL/dW = P^T dL/dY,  dL/dP = dL/dY W^T
        dw = backend.copied(cols.T) @ g
        d_cols = (g @ w_mat.T).reshape(-1, oh, ow, self.kernel[0] * self.kernel[1], c)
        padded = (h + sum(pads[0]), w + sum(pads[1]))
        dx = patches_vjp(d_cols, padded, self.kernel, self.stride)   # in place
        return {"w": dw.reshape(p["w"].shape), "b": db}, _crop(dx, pads, (h, w))
