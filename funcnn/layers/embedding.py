"""Embedding (tokens -> vectors, GPT-2's wte) and PositionalEmbedding (learned, GPT-2's wpe).

The layer contract is stated once, in funcnn/layers/__init__.py. An Embedding's input is
integers, which are not differentiated: its dL/dx is what `jax.vjp` gives for an integer
input, float0 zeros of x's shape (`jax.dtypes.float0`); `serial` passes it on as the last g,
which no one reads (`funcnn.model.grads` keeps only dL/dp).
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from funcnn.checks import InputTypeError, integer
from funcnn.layers.base import Layer

STD = 0.02                    # GPT-2's (and nanoGPT's) init: w ~ N(0, 0.02^2)


def _normal(key, shape, dtype):
    return STD * jax.random.normal(key, shape, dtype)


@dataclass(frozen=True)
class Embedding(Layer):
    """Row x of a table: tokens x: int[n, t] -> y = w[x]: f32[n, t, d], y[i, j] = w[x[i, j]],
    with p = {"w": f32[vocab, d]} drawn from N(0, 0.02^2). (Any integer shape works:
    int[n, ...] -> f32[n, ..., d].) A token outside [0, vocab) gives a row of NaN, so a
    wrong vocabulary never trains quietly (`fit` stops with TrainingDiverged)."""
    vocab: int
    d: int
    independent_rows = True
    takes_tokens = True

    def __post_init__(self):
        object.__setattr__(self, "vocab", integer("Embedding(vocab): the number of tokens",
                                                  self.vocab, 1))
        object.__setattr__(self, "d", integer("Embedding(d): the width of a token's vector",
                                              self.d, 1))

    def __repr__(self):
        return f"Embedding({self.vocab}, {self.d})"

    def shape(self, input_shape):
        return (*input_shape, self.d)

    def init(self, key, input_shape, dtype):
        return {"w": _normal(key, (self.vocab, self.d), dtype)}

    def _rows(self, x):
        """x as row indices of w, a token outside [0, vocab) as vocab (out of the table:
        jnp.take fills it with NaN, the scatter of the VJP drops it)."""
        if not jnp.issubdtype(x.dtype, jnp.integer):
            raise InputTypeError(f"{self!r} takes integer tokens int32[n, t] (ids in "
                                 f"[0, {self.vocab})), got {x.dtype} numbers")
        return jnp.where((x < 0) | (x >= self.vocab), self.vocab, x)

    def apply(self, p, x, train=False, key=None):
        rows = self._rows(x)
        y = jnp.take(p["w"], rows, axis=0, mode="fill", fill_value=jnp.nan)   # y = w[x]
        return y, rows

    def vjp(self, p, cache, g):
        rows = cache
        # y[i, j] = w[x[i, j]]  =>  dL/dw[v] = sum of g[i, j] over the (i, j) with x[i, j] = v:
        # each position's g added into its token's row (a segment sum; repeats add up)
        dw = jnp.zeros_like(p["w"]).at[rows.reshape(-1)].add(
            g.reshape(-1, self.d), mode="drop")
        return {"w": dw}, np.zeros(rows.shape, jax.dtypes.float0)   # no dL/dx for integers


@dataclass(frozen=True)
class PositionalEmbedding(Layer):
    """A learned vector per position added to each token's: x: f32[n, t, d] ->
    y = x + w[:t]: f32[n, t, d], with p = {"w": f32[max_len, d]} drawn from N(0, 0.02^2).
    A sequence longer than max_len is refused when the network is built."""
    max_len: int
    independent_rows = True

    def __post_init__(self):
        object.__setattr__(self, "max_len", integer(
            "PositionalEmbedding(max_len): the longest sequence", self.max_len, 1))

    def __repr__(self):
        return f"PositionalEmbedding({self.max_len})"

    def shape(self, input_shape):
        if len(input_shape) != 2:
            self._fail(f"needs sequences of vectors (t, d), got {input_shape}")
        if input_shape[0] > self.max_len:
            self._fail(f"a sequence of t = {input_shape[0]} positions is longer than max_len "
                       f"= {self.max_len}; make max_len >= {input_shape[0]}")
        return input_shape

    def init(self, key, input_shape, dtype):
        return {"w": _normal(key, (self.max_len, input_shape[-1]), dtype)}

    def apply(self, p, x, train=False, key=None):
        t = x.shape[1]
        return x + p["w"][None, :t], None                      # y[i, j] = x[i, j] + w[j]

    def vjp(self, p, cache, g):
        t = g.shape[1]
        # y = x + w[:t]  =>  dL/dw[j] = sum over rows of g[:, j] (j < t; 0 beyond), dL/dx = g
        dw = jnp.zeros_like(p["w"]).at[:t].set(g.sum(axis=0))
        return {"w": dw}, g
