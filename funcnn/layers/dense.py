"""Dense (x W + b, with an optional activation: DotCSV's layer record), Flatten and Reshape.

The layer contract is stated once, in funcnn/layers/__init__.py.
"""
from __future__ import annotations

from dataclasses import dataclass


from funcnn import backend, initializers
from funcnn import math as fmath
from funcnn.checks import InputError, InputTypeError, integer
from funcnn.layers.base import Layer, _size


# --- dense -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Dense(Layer):
    """A fully connected layer, with an optional activation: DotCSV's record (W, b, act).

    x: f32[n, d_in] -> a = act(x W + b): f32[n, n_out]; p = {"w": f32[d_in, n_out],
    "b": f32[n_out]}, drawn by `init` (a scheme of `funcnn.initializers`). A sequence,
    x: f32[n, t, d_in], is mapped at each of its t positions alike (GPT's feed-forward)."""
    n: int
    act: fmath.Activation | None = None
    init_scheme: object = initializers.glorot()
    independent_rows = True

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
        if len(input_shape) not in (1, 2):          # (d,) or a sequence (t, d); not an image
            self._fail(f"needs a flat input (d,) (or a sequence (t, d)), got {input_shape}; "
                       "put Flatten() before it")
        return (*input_shape[:-1], self.n)

    def init(self, key, input_shape, dtype):
        return self.init_scheme(key, input_shape[-1], self.n, dtype)

    def apply(self, p, x, train=False, key=None):
        z = dense(p, x)
        a = z if self.act is None else self.act.fn(z)
        return a, (x, z, a)

    def vjp(self, p, cache, g):
        x, z, a = cache
        g = g if self.act is None else self.act.vjp(z, a, g)     # dL/da -> dL/dz
        return dense_vjp(p, x, g)


def dense(p, x):
    """x: f32[n, d_in], p["w"]: f32[d_in, d_out], p["b"]: f32[d_out] -> z: f32[n, d_out]
    (x: f32[n, t, d_in] -> z: f32[n, t, d_out], the same map at every position)."""
    b = p["b"].reshape(*(1,) * (x.ndim - 1), -1)  # b broadcast over the rows (and positions)
    return x @ p["w"] + b


def dense_vjp(p, x, g):
    """g = dL/dz: f32[n, d_out] -> (dL/dp shaped like p, dL/dx: f32[n, d_in]); a sequence's
    rows and positions are summed alike (x and g as [n t, d] matrices)."""
    # z = x W + b  =>  dL/dW = x^T g,  dL/db = sum over rows of g,  dL/dx = g W^T
    # (backend.copied(x.T) is x.T, only faster on a CPU: see backend.py)
    dx = g @ p["w"].T
    if x.ndim > 2:                                # [n, t, d] -> [n t, d]: every position a row
        x, g = x.reshape(-1, x.shape[-1]), g.reshape(-1, g.shape[-1])
    return {"w": backend.copied(x.T) @ g, "b": g.sum(axis=0)}, dx


# --- shapes ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Flatten(Layer):
    """x: f32[n, ...] -> f32[n, prod(...)], row-major (the last axis varies fastest)."""
    independent_rows = True

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
    independent_rows = True

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
