"""Init schemes: how a layer's first weights are drawn.

Contract: a scheme is a frozen dataclass (hashable, equal by value, so a layer holding one is
a static argument of `jit`) called as `scheme(key, d_in, d_out, dtype) -> {"w": f32[d_in, d_out],
"b": f32[d_out]}`. `d_in` is the fan-in: a dense layer's input width, a convolution's
kh * kw * c_in (its weights are the same matrix, reshaped to HWIO).
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from funcnn import rng
from funcnn.checks import InputTypeError, number


@dataclass(frozen=True)
class uniform:
    """w and b uniform in [-a, a] (the Clojure default, a = 0.5; DotCSV's, a = 1)."""
    a: float = 0.5

    def __post_init__(self):
        number("a (the half-width of uniform(a))", self.a, positive=True)

    def __call__(self, key, d_in, d_out, dtype):
        k_w, k_b = jax.random.split(key)
        return {"w": rng.draw_uniform(k_w, (d_in, d_out), -self.a, self.a, dtype),
                "b": rng.draw_uniform(k_b, (d_out,), -self.a, self.a, dtype)}


@dataclass(frozen=True)
class glorot:
    """Xavier/Glorot uniform: w in [-s, s], s = sqrt(6 / (d_in + d_out)); b = 0."""

    def __call__(self, key, d_in, d_out, dtype):
        s = (6.0 / (d_in + d_out)) ** 0.5
        return {"w": rng.draw_uniform(key, (d_in, d_out), -s, s, dtype),
                "b": jnp.zeros(d_out, dtype)}


xavier = glorot


@dataclass(frozen=True)
class he:
    """He normal, for ReLU: w ~ N(0, 2 / d_in); b = 0."""

    def __call__(self, key, d_in, d_out, dtype):
        w = jax.random.normal(key, (d_in, d_out), dtype) * (2.0 / d_in) ** 0.5
        return {"w": w, "b": jnp.zeros(d_out, dtype)}


@dataclass(frozen=True)
class lecun:
    """`randn / sqrt(fan_in)` (seed 2's init, LeCun normal): w ~ N(0, 1 / d_in); b = 0."""

    def __call__(self, key, d_in, d_out, dtype):
        w = jax.random.normal(key, (d_in, d_out), dtype) / d_in ** 0.5
        return {"w": w, "b": jnp.zeros(d_out, dtype)}


SCHEMES = {scheme.__name__: scheme for scheme in (uniform, glorot, he, lecun)}


def check_scheme(init) -> None:
    """Try a scheme that is not one of the above on shapes alone (nothing runs): it must make
    {"w": [2, 3], "b": [3]}."""
    if type(init) in SCHEMES.values():
        return
    want = {"w": (2, 3), "b": (3,)}
    try:
        got = jax.eval_shape(lambda: init(jax.random.key(0), 2, 3, jnp.float32))
        ok = isinstance(got, dict) and {n: v.shape for n, v in got.items()} == want
    except Exception:
        ok = False
    if not ok:
        raise InputTypeError(f"init must be a scheme such as funcnn.model.uniform(0.5): a "
                             f"function (key, d_in, d_out, dtype) -> {{'w', 'b'}}; got {init!r}")
