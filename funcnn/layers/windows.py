"""Windows: the patches a convolution or a pool reads (im2col), their VJP, and padding.

The layer contract is stated once, in funcnn/layers/__init__.py.
"""
from __future__ import annotations

from itertools import product

import jax.numpy as jnp
from jax import lax

from funcnn.checks import InputError, integer
from funcnn.layers.base import _hw


# --- windows: the patches a convolution or a pool reads --------------------------------------
# A window of kh x kw moved by stride (sh, sw) over a (padded) x: f32[n, H, W, c] reads, for
# each of its kh * kw offsets (i, j), the strided slice x[:, i::sh, j::sw]. Stacked, they are
# the patches f32[n, oh, ow, kh * kw, c] (im2col): a convolution is then one matrix product and
# a pool one reduction. The VJP of a strided slice is a pad: put each slice's gradient back at
# rows i, i + sh, ... (zeros between: "interior" padding) and add the kh * kw of them up.

def _out_size(size, k, s, lo, hi):
    return (size + lo + hi - k) // s + 1


def _padding(padding, in_hw, window, stride):
    """"VALID" -> no padding; "SAME" -> out = ceil(in / stride), the padding split with the
    odd one at the end (TensorFlow's rule); explicit ((top, bottom), (left, right)) as given."""
    if padding == "VALID":
        return ((0, 0), (0, 0))
    if padding == "SAME":
        pads = []
        for size, k, s in zip(in_hw, window, stride):
            total = max((-(-size // s) - 1) * s + k - size, 0)
            pads.append((total // 2, total - total // 2))
        return tuple(pads)
    return padding


def _check_padding(owner, padding):
    if padding in ("SAME", "VALID"):
        return padding
    try:
        pads = tuple(tuple(integer("padding", v, 0) for v in pair) for pair in padding)
        ok = len(pads) == 2 and all(len(pr) == 2 for pr in pads)
    except (TypeError, ValueError):                  # InputError, InputTypeError among them
        ok = False
    if not ok:
        raise InputError(f"{owner}'s padding must be 'SAME', 'VALID' or ((top, bottom), "
                         f"(left, right)) of ints >= 0, got {padding!r}")
    return pads


def _window_shape(layer, input_shape, window, stride, padding):
    """(oh, ow) for a window over input (h, w, c), or an InputError naming the layer."""
    if len(input_shape) != 3:
        layer._fail(f"needs an image input (h, w, c), got {input_shape}; put "
                    "Reshape((h, w, c)) before it")
    pads = _padding(padding, input_shape[:2], window, stride)
    out = tuple(_out_size(size, k, s, *pad)
                for size, k, s, pad in zip(input_shape[:2], window, stride, pads))
    if min(out) < 1:
        layer._fail(f"its {_hw(window)} window does not fit in the {_hw(input_shape)} input "
                    f"padded by {pads}")
    return out


def patches(x, window, stride, out_hw):
    """x: f32[n, H, W, c] (already padded) -> f32[n, oh, ow, kh * kw, c]."""
    (kh, kw), (sh, sw), (oh, ow) = window, stride, out_hw
    # a row of kw offsets at a time, then the kh rows: XLA's CPU backend fuses a stack of at
    # most 8 parts into one loop, and copies out every part of a larger one first (3x3: 9;
    # docs/performance.md)
    rows = [jnp.stack([x[:, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw]
                       for j in range(kw)], axis=3) for i in range(kh)]
    stacked = jnp.stack(rows, axis=3)                         # [n, oh, ow, kh, kw, c]
    return stacked.reshape(stacked.shape[:3] + (kh * kw,) + stacked.shape[5:])


def patches_vjp(g, padded_hw, window, stride):
    """g = dL/dpatches: f32[n, oh, ow, kh * kw, c] -> dL/dx: f32[n, H, W, c] (x padded)."""
    (kh, kw), (sh, sw), (H, W) = window, stride, padded_hw
    _, oh, ow, _, _ = g.shape
    zero = jnp.zeros((), g.dtype)
    dx = None
    for t, (i, j) in enumerate(product(range(kh), range(kw))):
        # slice t read x[:, i:i + sh (oh - 1) + 1:sh, ...]: its gradient goes back there
        rows = (i, H - i - sh * (oh - 1) - 1, sh - 1)        # (before, after, between)
        cols = (j, W - j - sw * (ow - 1) - 1, sw - 1)
        g_t = lax.index_in_dim(g, t, axis=3, keepdims=False)   # offset t's gradient
        back = lax.pad(g_t, zero, ((0, 0, 0), rows, cols, (0, 0, 0)))
        dx = back if dx is None else dx + back               # overlapping windows add
    return dx


def _pad(x, pads, value=0.0):
    (top, bottom), (left, right) = pads
    return jnp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=value)


def _crop(dx, pads, in_hw):
    (top, _), (left, _) = pads
    return dx[:, top:top + in_hw[0], left:left + in_hw[1], :]    # padding gets no gradient
