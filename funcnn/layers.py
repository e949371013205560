"""Layers: values that compose, each a forward pass and its VJP written by hand, side by side.

Contract (stax's layer, with CS231n's cache). A layer is a frozen, hashable description: sizes
and choices, never numbers, so a network of layers is a static argument of `jit`. Shapes are
per example (no batch axis); data are NHWC (`x: f32[n, h, w, c]`), convolution kernels HWIO.
- `shape(input_shape) -> output_shape`: plain Python; raises `InputError` naming the layer.
- `init(key, input_shape, dtype) -> p`: the layer's numbers, a dict of arrays (`()` if none).
- `apply(p, x, train, key) -> (y, cache)`: the forward pass; the cache is exactly what the
  VJP reads. `train` picks batch statistics and dropout; `key` is used only by Dropout.
- `vjp(p, cache, g) -> (dL/dp shaped like p, dL/dx)`: pulls g = dL/dy back one layer.
- `update_state(p, p_new, cache) -> p_new`: state that moves without a gradient. BatchNorm's
  running mean and variance live in its params beside gamma and beta (as PyTorch keeps its
  buffers in the `state_dict`); their gradient is zero, and after each training step `fit`
  and `grad_step` set them from the step's batch here, so no optimizer or weight decay
  ever moves them. Every other layer returns `p_new` as it is.
`serial(*layers)` is itself a layer; an activation of `funcnn.math` in it is a layer with no
numbers. No autodiff anywhere: `jax.grad` is the referee (`funcnn.gradcheck`), not the engine.
"""
from __future__ import annotations

import math as _math
from dataclasses import dataclass
from functools import cached_property
from itertools import product

import jax
import jax.numpy as jnp
from jax import lax

from funcnn import backend, initializers
from funcnn import math as fmath
from funcnn.checks import InputError, InputTypeError, integer, number

class Layer:
    """The defaults every layer shares: no numbers, no key, no state."""
    needs_key = False                    # does apply(train=True) draw random numbers?

    def init(self, key, input_shape, dtype):
        del key, input_shape, dtype
        return ()

    def update_state(self, p, p_new, cache):
        del p, cache
        return p_new

    def workspace(self, input_shape) -> int:
        """Floats one example needs inside this layer (evaluation splits big inputs by it)."""
        return max(_size(input_shape), _size(self.shape(input_shape)))

    def _fail(self, message):
        raise InputError(f"{self!r}: {message}")


def _size(shape) -> int:
    return _math.prod(shape)


def _pair(name, v, least=1) -> tuple[int, int]:
    """An int or a pair of ints -> a pair: 3 -> (3, 3); (2, 1) -> (2, 1)."""
    vs = (v, v) if not isinstance(v, (tuple, list)) else tuple(v)
    if len(vs) != 2:
        raise InputError(f"{name} must be an int or a pair of ints, got {v!r}")
    return tuple(integer(name, u, least) for u in vs)


def _hw(a) -> str:
    return f"{a[0]}x{a[1]}"


# --- an activation as a layer ----------------------------------------------------------------

@dataclass(frozen=True)
class Act(Layer):
    """`funcnn.math`'s activation as a layer: a = act(z) on the last axis, no numbers."""
    act: fmath.Activation

    def __repr__(self):
        return self.act.name

    def shape(self, input_shape):
        return input_shape

    def apply(self, p, x, train=False, key=None):
        a = self.act.fn(x)
        return a, (x, a)

    def vjp(self, p, cache, g):
        z, a = cache
        return (), self.act.vjp(z, a, g)           # dL/dz = g * da/dz (math.py's formula)


def as_layer(layer, where: str = "layer") -> Layer:
    """A layer as it is; an activation of funcnn.math wrapped as `Act`; anything else refused."""
    if isinstance(layer, fmath.Activation):
        return Act(layer)
    if isinstance(layer, Layer):
        return layer
    raise InputTypeError(f"{where} must be a layer of funcnn.layers (Dense, Conv2D, ...) or an "
                         f"activation such as funcnn.math.relu, got {type(layer).__name__} "
                         f"{layer!r}")


# --- dense -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Dense(Layer):
    """A fully connected layer, with an optional activation: DotCSV's record (W, b, act).

    x: f32[n, d_in] -> a = act(x W + b): f32[n, n_out]; p = {"w": f32[d_in, n_out],
    "b": f32[n_out]}, drawn by `init` (a scheme of `funcnn.initializers`)."""
    n: int
    act: fmath.Activation | None = None
    init_scheme: object = initializers.glorot()

    def __init__(self, n, act=None, init=initializers.glorot()):
        object.__setattr__(self, "n", integer("Dense(n): the number of outputs", n, 1))
        if act is not None and not isinstance(act, fmath.Activation):
            raise InputTypeError(f"Dense's act must be an activation such as funcnn.math.relu "
                                 f"(or None), got {type(act).__name__}")
        object.__setattr__(self, "act", act)
        initializers.check_scheme(init)
        object.__setattr__(self, "init_scheme", init)

    def __repr__(self):
        return f"Dense({self.n}{'' if self.act is None else f', {self.act.name}'})"

    def shape(self, input_shape):
        if len(input_shape) != 1:
            self._fail(f"needs a flat input (d,), got {input_shape}; put Flatten() before it")
        return (self.n,)

    def init(self, key, input_shape, dtype):
        return self.init_scheme(key, input_shape[0], self.n, dtype)

    def apply(self, p, x, train=False, key=None):
        z = dense(p, x)
        a = z if self.act is None else self.act.fn(z)
        return a, (x, z, a)

    def vjp(self, p, cache, g):
        x, z, a = cache
        g = g if self.act is None else self.act.vjp(z, a, g)     # dL/da -> dL/dz
        return dense_vjp(p, x, g)


def dense(p, x):
    """x: f32[n, d_in], p["w"]: f32[d_in, d_out], p["b"]: f32[d_out] -> z: f32[n, d_out]."""
    return x @ p["w"] + p["b"][None, :]           # b broadcast over the n rows


def dense_vjp(p, x, g):
    """g = dL/dz: f32[n, d_out] -> (dL/dp shaped like p, dL/dx: f32[n, d_in])."""
    # z = x W + b  =>  dL/dW = x^T g,  dL/db = sum over rows of g,  dL/dx = g W^T
    # (backend.copied(x.T) is x.T, only faster on a CPU: see backend.py)
    return {"w": backend.copied(x.T) @ g, "b": g.sum(axis=0)}, g @ p["w"].T


# --- shapes ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Flatten(Layer):
    """x: f32[n, ...] -> f32[n, prod(...)], row-major (the last axis varies fastest)."""

    def __repr__(self):
        return "Flatten"

    def shape(self, input_shape):
        return (_size(input_shape),)

    def apply(self, p, x, train=False, key=None):
        return x.reshape(x.shape[0], -1), x.shape

    def vjp(self, p, cache, g):
        return (), g.reshape(cache)                # a reshape's VJP is the reshape back


@dataclass(frozen=True)
class Reshape(Layer):
    """x: f32[n, ...] -> f32[n, *shape] with as many numbers per example; one -1 may stand
    for the size that makes them equal: `Reshape((28, 28, 1))` after a flat 784."""
    target: tuple

    def __init__(self, shape):
        try:
            target = (shape,) if not isinstance(shape, (tuple, list)) else tuple(shape)
            target = tuple(integer("Reshape's shape", s, -1) for s in target)
        except (InputError, InputTypeError):
            target = ()
        if not target or 0 in target or target.count(-1) > 1:
            raise InputError(f"Reshape's shape must be positive ints (one may be -1), like "
                             f"(28, 28, 1); got {shape!r}")
        object.__setattr__(self, "target", target)

    def __repr__(self):
        return f"Reshape({self.target})"

    def shape(self, input_shape):
        n, known = _size(input_shape), _size(s for s in self.target if s != -1)
        fits = n % known == 0 if -1 in self.target else n == known
        if not fits:
            self._fail(f"cannot hold the {n} numbers of an input {input_shape}")
        return tuple(n // known if s == -1 else s for s in self.target)

    def apply(self, p, x, train=False, key=None):
        return x.reshape(x.shape[0], *self.shape(x.shape[1:])), x.shape

    def vjp(self, p, cache, g):
        return (), g.reshape(cache)


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
    return jnp.stack([x[:, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw, :]
                      for i, j in product(range(kh), range(kw))], axis=3)


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
        back = lax.pad(g[:, :, :, t, :], zero, ((0, 0, 0), rows, cols, (0, 0, 0)))
        dx = back if dx is None else dx + back               # overlapping windows add
    return dx


def _pad(x, pads, value=0.0):
    (top, bottom), (left, right) = pads
    return jnp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=value)


def _crop(dx, pads, in_hw):
    (top, _), (left, _) = pads
    return dx[:, top:top + in_hw[0], left:left + in_hw[1], :]    # padding gets no gradient


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


# --- dropout ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Dropout(Layer):
    """Drops each unit with probability `rate` in training (as PyTorch and Keras mean it; stax's
    `Dropout(rate)` keeps with that probability instead) and scales the kept ones by
    1 / (1 - rate), so a unit's expected value does not change; evaluation is the identity.
    The mask comes from the key: the same key gives the same mask."""
    rate: float

    def __init__(self, rate):
        rate = number("Dropout(rate): the probability of dropping a unit", rate)
        if not 0.0 <= rate < 1.0:
            raise InputError(f"Dropout(rate) must be in [0, 1): the probability of dropping a "
                             f"unit (0.5 drops half), got {rate}")
        object.__setattr__(self, "rate", rate)

    @property
    def needs_key(self):
        return self.rate > 0

    def __repr__(self):
        return f"Dropout({self.rate:g})"

    def shape(self, input_shape):
        return input_shape

    def apply(self, p, x, train=False, key=None):
        if not train or self.rate == 0:
            return x, None                                   # evaluation: y = x
        keep = jax.random.bernoulli(key, 1.0 - self.rate, x.shape)
        scale = jnp.where(keep, 1.0 / (1.0 - self.rate), 0.0).astype(x.dtype)
        return x * scale, scale                              # y = x m / (1 - rate)

    def vjp(self, p, cache, g):
        return (), g if cache is None else g * cache         # dL/dx = g m / (1 - rate)


# --- normalisation ---------------------------------------------------------------------------

def _per_channel(v, ndim):
    """f32[c] -> f32[1, ..., 1, c]: broadcast over every axis but the last, said explicitly."""
    return v.reshape((1,) * (ndim - 1) + (-1,))


def _normalized_vjp(g, x_hat, inv, axes):
    """dL/dx of x_hat = (x - mean(x)) / sqrt(var(x) + eps) over `axes`, given g = dL/dx_hat:
    dL/dx = inv (g - mean(g) - x_hat mean(g x_hat)), inv = 1 / sqrt(var + eps)
    (the mean's and the variance's paths are the two subtracted terms)."""
    mean = lambda v: v.mean(axis=axes, keepdims=True)
    return inv * (g - mean(g) - x_hat * mean(g * x_hat))


@dataclass(frozen=True)
class BatchNorm(Layer):
    """Normalises each channel (the last axis) over the batch and every other axis, then
    scales and shifts it: y = gamma (x - mu) / sqrt(var + eps) + beta.

    Training uses the batch's mu and var (biased). Evaluation uses the running mean and
    variance kept in params: p = {"gamma", "beta", "mean", "var"}, each f32[c]. Each training
    step moves them, mean <- (1 - momentum) mean + momentum mu (var likewise, with the
    unbiased batch variance, as PyTorch does). They get a zero gradient: `fit` and `grad_step`
    set them from the batch after the optimizer's step (`update_state`), so no optimizer or
    weight decay moves them. Padding rows (weight 0: those of a last partial batch, and with
    `fit(mesh=...)` those that round a batch up to a multiple of the devices) count in mu and
    var; the loss does not count them."""
    momentum: float = 0.1
    eps: float = 1e-5

    def __post_init__(self):                  # keep plain floats: equal layers hash alike
        momentum = number("BatchNorm's momentum", self.momentum)
        if not 0.0 < momentum <= 1.0:
            raise InputError(f"BatchNorm's momentum must be in (0, 1]: the weight of each "
                             f"batch in the running statistics (PyTorch's 0.1); got {momentum}")
        object.__setattr__(self, "momentum", momentum)
        object.__setattr__(self, "eps", number("BatchNorm's eps", self.eps, positive=True))

    def __repr__(self):
        return "BatchNorm"

    def shape(self, input_shape):
        return input_shape

    def init(self, key, input_shape, dtype):
        c = input_shape[-1]
        return {"gamma": jnp.ones(c, dtype), "beta": jnp.zeros(c, dtype),
                "mean": jnp.zeros(c, dtype), "var": jnp.ones(c, dtype)}

    def apply(self, p, x, train=False, key=None):
        axes = tuple(range(x.ndim - 1))                      # all but the channels
        c = lambda v: _per_channel(v, x.ndim)
        if train:
            mu = x.mean(axis=axes, keepdims=True)
            var = ((x - mu) ** 2).mean(axis=axes, keepdims=True)
            count = _size(x.shape[:-1])
            stats = (mu.reshape(-1), var.reshape(-1) * count / max(count - 1, 1))  # unbiased
        else:
            # running statistics are state, not parameters: no gradient flows into them
            # (stop_gradient says so to jax.grad, the referee, too)
            mu, var, stats = c(lax.stop_gradient(p["mean"])), c(lax.stop_gradient(p["var"])), None
        inv = lax.rsqrt(var + self.eps)
        x_hat = (x - mu) * inv
        return c(p["gamma"]) * x_hat + c(p["beta"]), (x_hat, inv, stats)

    def vjp(self, p, cache, g):
        x_hat, inv, stats = cache
        axes = tuple(range(g.ndim - 1))
        d = {"gamma": (g * x_hat).sum(axis=axes), "beta": g.sum(axis=axes),   # y = gamma x_hat + beta
             "mean": jnp.zeros_like(p["mean"]), "var": jnp.zeros_like(p["var"])}
        g_hat = g * _per_channel(p["gamma"], g.ndim)        # dL/dx_hat
        if stats is None:                                    # evaluation: mu, var are constants
            return d, g_hat * inv
        return d, _normalized_vjp(g_hat, x_hat, inv, axes)   # training: mu, var depend on x

    def update_state(self, p, p_new, cache):
        stats = cache[2]
        if stats is None:
            return p_new
        m = self.momentum
        mu, var = stats
        return {**p_new, "mean": (1 - m) * p["mean"] + m * mu,
                "var": (1 - m) * p["var"] + m * var}


@dataclass(frozen=True)
class LayerNorm(Layer):
    """Normalises each example over its last axis (its features, or an image's channels at
    each pixel), then scales and shifts: y = gamma (x - mu) / sqrt(var + eps) + beta, with
    p = {"gamma", "beta"}: f32[d]. The same in training and evaluation."""
    eps: float = 1e-5

    def __post_init__(self):
        object.__setattr__(self, "eps", number("LayerNorm's eps", self.eps, positive=True))

    def __repr__(self):
        return "LayerNorm"

    def shape(self, input_shape):
        return input_shape

    def init(self, key, input_shape, dtype):
        d = input_shape[-1]
        return {"gamma": jnp.ones(d, dtype), "beta": jnp.zeros(d, dtype)}

    def apply(self, p, x, train=False, key=None):
        mu = x.mean(axis=-1, keepdims=True)
        inv = lax.rsqrt(((x - mu) ** 2).mean(axis=-1, keepdims=True) + self.eps)
        x_hat = (x - mu) * inv
        c = lambda v: _per_channel(v, x.ndim)
        return c(p["gamma"]) * x_hat + c(p["beta"]), (x_hat, inv)

    def vjp(self, p, cache, g):
        x_hat, inv = cache
        axes = tuple(range(g.ndim - 1))
        d = {"gamma": (g * x_hat).sum(axis=axes), "beta": g.sum(axis=axes)}
        return d, _normalized_vjp(g * _per_channel(p["gamma"], g.ndim), x_hat, inv, -1)


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
