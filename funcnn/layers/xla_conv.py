"""XLA's convolution (`lax.conv_general_dilated`, which cuDNN runs on a GPU), its VJP by hand.

A formulation of Conv2D beside the patch product in conv.py (which reads as the definition);
`Conv2D._as` is the one rule that chooses it: on a GPU. x_pad: f32[n, H, W, c_in] (padded),
w: f32[kh, kw, c_in, c_out] (HWIO), y: f32[n, oh, ow, c_out].

The VJP as convolutions, with the stride (sh, sw):
- dL/dx_pad = g spread out by the stride (zeros between), padded by k - 1 (and by the rows the
  windows never reached), correlated with the kernel flipped in space and with its in and out
  channels swapped: every x_pad element collects the gradient of each output whose window
  covered it, times the weight that joined them;
- dL/dW[i, j, c, o] = sum_{n, r, s} x_pad[n, r sh + i, s sw + j, c] g[n, r, s, o]: x_pad
  correlated with g taken as a kernel dilated by the stride (channels as the batch).
"""
from __future__ import annotations

import jax.numpy as jnp
from jax import lax

NHWC = ("NHWC", "HWIO", "NHWC")


def conv(x_pad, w, stride):
    """y = x_pad correlated with w at `stride` -> (y, cache for conv_vjp)."""
    y = lax.conv_general_dilated(x_pad, w, stride, "VALID", dimension_numbers=NHWC)
    return y, x_pad


def conv_vjp(w, x_pad, g, stride):
    """g = dL/dy -> (dL/dw, dL/dx_pad), both by convolutions (the module's formulas)."""
    kh, kw = w.shape[:2]
    H, W = x_pad.shape[1:3]
    rh, rw = (H - kh) % stride[0], (W - kw) % stride[1]     # rows, columns no window reaches
    flipped = jnp.flip(w, axis=(0, 1)).swapaxes(2, 3)        # [kh, kw, c_out, c_in]
    dx_pad = lax.conv_general_dilated(g, flipped, (1, 1), ((kh - 1, kh - 1 + rh),
                                                           (kw - 1, kw - 1 + rw)),
                                      lhs_dilation=stride, dimension_numbers=NHWC)
    # the batch axis plays the channels, the channels the batch: x_pad read as "CHWN"
    dw = lax.conv_general_dilated(x_pad, g, (1, 1), "VALID", rhs_dilation=stride,
                                  dimension_numbers=("CHWN", "IHWO", "HWNC"))
    return dw[:kh, :kw], dx_pad
