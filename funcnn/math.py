"""Activations: the Clojure project's `nn.math`. Each is a function and its derivative.

Contract: an `Activation` holds `fn(z) -> a` and `vjp(z, a, g) -> g * da/dz` (a vector-Jacobian
product: the incoming gradient g = dL/da pulled back to dL/dz, without building the Jacobian).
The VJP gets both z and a = fn(z) so it can reuse whichever makes the formula cheap.
All act on the last axis of `f32[n, k]` arrays and stay finite at |z| = 1000 in float32.
NaN in gives NaN out, in `fn` and in `vjp` alike (as jax.nn's do): a NaN never turns into a
confident number.
They are module-level values, so a network holding them hashes the same on every call.
"""
from __future__ import annotations

import math as _math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp


class Activation(NamedTuple):
    name: str
    fn: Callable[[jax.Array], jax.Array]                        # z -> a
    vjp: Callable[[jax.Array, jax.Array, jax.Array], jax.Array]  # (z, a, g) -> g * da/dz

    def __repr__(self) -> str:
        return self.name


def _identity(z):
    return z
def _identity_vjp(z, a, g):
    return g                                     # d z / dz = 1
identity = Activation("identity", _identity, _identity_vjp)


def _sigmoid(z):
    return 0.5 * (jnp.tanh(0.5 * z) + 1.0)       # = 1 / (1 + e^-z), finite at |z| = 1000
def _sigmoid_vjp(z, a, g):
    return g * a * (1.0 - a)                     # sigma'(z) = sigma(z) (1 - sigma(z)) = a (1 - a)
sigmoid = Activation("sigmoid", _sigmoid, _sigmoid_vjp)


def _tanh(z):
    return jnp.tanh(z)
def _tanh_vjp(z, a, g):
    return g * (1.0 - a * a)                     # tanh'(z) = 1 - tanh(z)^2 = 1 - a^2
tanh = Activation("tanh", _tanh, _tanh_vjp)


def _relu(z):
    return jnp.where(z <= 0, 0.0, z)             # max(z, 0), NaN kept (NaN <= 0 is false)
def _relu_vjp(z, a, g):                          # relu'(z) = 1 if z > 0 else 0 (0 at z = 0),
    return jnp.where(z > 0, g, jnp.where(z <= 0, 0.0, z))     # NaN where z is NaN
relu = Activation("relu", _relu, _relu_vjp)


def _minus_max(z):
    return z - z.max(axis=-1, keepdims=True)           # softmax(z) = softmax(z - c) for any c


def _softmax(z):
    e = jnp.exp(_minus_max(z))                         # e <= 1: no overflow
    return e / e.sum(axis=-1, keepdims=True)
def _softmax_vjp(z, a, g):
    # da_i/dz_j = a_i (delta_ij - a_j)  =>  (g J)_j = a_j (g_j - sum_i g_i a_i)
    return a * (g - (a * g).sum(axis=-1, keepdims=True))
softmax = Activation("softmax", _softmax, _softmax_vjp)


def _log_softmax(z):
    # funcnn's one log-sum-exp (losses' softmax cross-entropy reads it here): with m = max_j z_j,
    # log softmax(z)_i = z_i - lse(z) = (z_i - m) - log sum_j e^(z_j - m); every e^(z_j - m) <= 1
    # and one is 1, so nothing overflows and the log never sees 0 (never log(softmax(z))).
    shifted = _minus_max(z)
    return shifted - jnp.log(jnp.exp(shifted).sum(axis=-1, keepdims=True))
def _log_softmax_vjp(z, a, g):
    # a_i = z_i - lse(z),  da_i/dz_j = delta_ij - softmax(z)_j  =>  g - softmax(z) sum_i g_i
    return g - jnp.exp(a) * g.sum(axis=-1, keepdims=True)
log_softmax = Activation("log_softmax", _log_softmax, _log_softmax_vjp)


_C = _math.sqrt(2.0 / _math.pi)


def _gelu(z):
    # GPT-2's tanh approximation of z Phi(z): 0.5 z (1 + tanh(u)), u = c (z + 0.044715 z^3),
    # c = sqrt(2/pi); tanh saturates, so it stays finite at |z| = 1000 (z^3 = 1e9 in float32)
    return 0.5 * z * (1.0 + jnp.tanh(_C * (z + 0.044715 * z ** 3)))
def _gelu_vjp(z, a, g):
    # t = tanh(u), du/dz = c (1 + 3 * 0.044715 z^2)
    #   =>  gelu'(z) = 0.5 (1 + t) + 0.5 z (1 - t^2) du/dz
    t = jnp.tanh(_C * (z + 0.044715 * z ** 3))
    return g * (0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * _C * (1.0 + 3 * 0.044715 * z * z))
gelu = Activation("gelu", _gelu, _gelu_vjp)


ACTIVATIONS = {act.name: act for act in (identity, sigmoid, tanh, relu, softmax, log_softmax,
                                         gelu)}
