"""Winograd's F(2x2, 3x3): a 3x3 convolution in 2.25x fewer multiplications, its VJP by hand.

Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks" (2016). Cut the padded
input into 4x4 tiles that overlap by 2 (a 4x4 window moved by 2: its 16 elements are strided
views of the padded input, as in windows.py); each tile d gives a 2x2 block of the output:

    Y = A^T [ (G w G^T) * (B^T d B) ] A          (* elementwise, over the 4x4 positions)

with the three constant matrices below. Over the channels the elementwise product becomes,
at each of the 16 positions (a, b), a matrix product: M[a, b] = V[a, b] U[a, b], with
V = B^T d B: f32[16, tiles, c_in] and U = G w G^T: f32[16, c_in, c_out]. That is 16 c_in c_out
multiply-adds for each 2x2 block of outputs where im2col spends 4 * 9 c_in c_out, and the
transformed input V is 4x the input where im2col's patches are 9x.

The VJP, by hand (every step is linear, so each is pulled back by its transpose):
- dL/dw: dL/dM = A g A^T on each 2x2 block of g, then dL/dU = V^T dL/dM (16 products), then
  dL/dw = G^T dL/dU G;
- dL/dx: the convolution of g with the kernel flipped in space, its in and out channels
  swapped (each input element collects the outputs whose windows held it, times the weight
  that joined them), computed by this same F(2x2, 3x3) forward. Pulling dL/dM back through
  the products and the input transform instead gives the same numbers, but the tiles then
  overlap on the way back and XLA's CPU backend fused their sum into the next layer's VJP,
  recomputing it several times (fashion-cnn, batch 128: 1.2x slower than this).
The transforms add and subtract (G and its transpose halve), so float32 rounding stays about
that of the patch product; the tests hold both VJPs against jax.grad in float64.
"""
from __future__ import annotations

import operator
from functools import reduce

import jax.numpy as jnp
import numpy as np
from jax import lax

from funcnn.layers.windows import _pad

B_T = np.array([[1, 0, -1, 0],          # the input transform: V = B^T d B
                [0, 1, 1, 0],
                [0, -1, 1, 0],
                [0, 1, 0, -1]], np.float64)
G = np.array([[1, 0, 0],                # the kernel transform: U = G w G^T
              [.5, .5, .5],
              [.5, -.5, .5],
              [0, 0, 1]], np.float64)
A_T = np.array([[1, 1, 1, 0],           # the output transform: Y = A^T M A
                [0, 1, -1, -1]], np.float64)


def _mix(m, parts):
    """The rows of m applied to a list of arrays: [sum_i m[a, i] parts[i] for each row a]
    (the constant matrices hold only 0, +-1 and +-1/2, so this is a few adds)."""
    def row(r):
        terms = [p if c == 1 else -p if c == -1 else float(c) * p
                 for c, p in zip(r, parts) if c]
        return reduce(operator.add, terms)
    return [row(r) for r in m]


def _mix2(m, grid):
    """m X m^T for a grid (list of lists) of arrays X[i][j]: the transform on both axes."""
    over_i = [_mix(m, list(col)) for col in zip(*grid)]       # over_i[j][a]
    return [_mix(m, [col[a] for col in over_i]) for a in range(len(m))]


def kernel_transform(w):
    """w: f32[3, 3, c_in, c_out] (HWIO) -> U = G w G^T: f32[16, c_in, c_out]."""
    g = jnp.asarray(G, w.dtype)
    return jnp.einsum("ai,bj,ijco->abco", g, g, w).reshape(16, *w.shape[2:])


def kernel_transform_vjp(d_u):
    """dL/dU: f32[16, c_in, c_out] -> dL/dw = G^T dL/dU G: f32[3, 3, c_in, c_out]."""
    g = jnp.asarray(G, d_u.dtype)
    return jnp.einsum("ai,bj,abco->ijco", g, g, d_u.reshape(4, 4, *d_u.shape[1:]))


def tiles(out_hw):
    """(th, tw): the 2x2 output blocks that cover an (oh, ow) output."""
    return tuple(-(-s // 2) for s in out_hw)


def _flat(x):
    """A tile grid's array [n, th, tw, c] -> the rows of a product: [n th tw, c]."""
    return x.reshape(-1, x.shape[3])


def forward(x_pad, u, out_hw):
    """x_pad: f32[n, 2 th + 2, 2 tw + 2, c_in] (padded, and with a row or column of zeros more
    where oh or ow is odd), U = kernel_transform(w) -> (y: f32[n, oh, ow, c_out], V) where V is
    the transformed input the VJP reads."""
    th, tw = tiles(out_hw)
    # d[i][j]: element (i, j) of every tile, a strided view f32[n, th, tw, c]
    d = [[x_pad[:, i:i + 2 * th - 1:2, j:j + 2 * tw - 1:2] for j in range(4)]
         for i in range(4)]
    v = _mix2(B_T, d)                                         # V = B^T d B, 4 x 4 views
    v = jnp.stack([jnp.stack([_flat(e) for e in row]) for row in v])
    v = v.reshape(16, *v.shape[2:])                           # [16, n th tw, c]
    m = jnp.einsum("ktc,kco->kto", v, u)                      # M = V U: [16, n th tw, c_out]
    grid = [[m[4 * a + b].reshape(-1, th, tw, u.shape[-1]) for b in range(4)]
            for a in range(4)]
    y = _mix2(A_T, grid)                                      # Y = A^T M A: the 2 x 2 blocks
    y = jnp.stack([jnp.stack(row, axis=3) for row in y], axis=2)   # [n, th, 2, tw, 2, c]
    y = y.reshape(y.shape[0], 2 * th, 2 * tw, y.shape[-1])
    return y[:, :out_hw[0], :out_hw[1]], v


def weight_vjp(v, g):
    """dL/dU = V^T dL/dM, with dL/dM = A g A^T on each 2x2 block of g = dL/dy."""
    oh, ow = g.shape[1:3]
    th, tw = tiles((oh, ow))
    g = jnp.pad(g, ((0, 0), (0, 2 * th - oh), (0, 2 * tw - ow), (0, 0)))   # odd sizes
    g_rs = [[g[:, r::2, s::2] for s in range(2)] for r in range(2)]
    dm = _mix2(A_T.T, g_rs)                                   # dL/dM = A g A^T
    dm = jnp.stack([jnp.stack([_flat(e) for e in row]) for row in dm])
    dm = dm.reshape(16, *dm.shape[2:])
    return jnp.einsum("ktc,kto->kco", v, dm)                  # M = V U  =>  dU = V^T dM


def conv(x, w, pads, out_hw):
    """A 3x3 stride-1 convolution: x: f32[n, h, w, c_in], w HWIO,
    pads ((top, bottom), (left, right)), out_hw (oh, ow) -> (y, cache for conv_vjp)."""
    th, tw = tiles(out_hw)                                    # odd sizes: a row of 0 more
    (top, bottom), (left, right) = pads
    x_pad = _pad(x, ((top, bottom + 2 * th - out_hw[0]), (left, right + 2 * tw - out_hw[1])))
    y, v = forward(x_pad, kernel_transform(w), out_hw)
    return y, (v, pads, x.shape[1:3])


def conv_vjp(w, cache, g):
    """g = dL/dy -> (dL/dw, dL/dx)."""
    v, ((top, _), (left, _)), (h, w_in) = cache
    dw = kernel_transform_vjp(weight_vjp(v, g))
    # dL/dx[r] = sum_i g[r + top - i] w[i]: a VALID convolution of g, padded by 2 - top in
    # front (and behind to the tiles' size), with the flipped, swapped kernel
    (oh, ow), (th, tw) = g.shape[1:3], tiles((h, w_in))
    g_pad = lax.pad(g, jnp.zeros((), g.dtype), ((0, 0, 0), (2 - top, 2 * th + top - oh, 0),
                                                (2 - left, 2 * tw + left - ow, 0), (0, 0, 0)))
    flipped = jnp.flip(w, axis=(0, 1)).swapaxes(2, 3)        # [3, 3, c_out, c_in]
    dx, _ = forward(g_pad, kernel_transform(flipped), (h, w_in))
    return dw, dx
