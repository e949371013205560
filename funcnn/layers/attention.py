"""CausalSelfAttention: GPT-2's multi-head attention, its VJP by hand, the softmax's included.

The layer contract is stated once, in funcnn/layers/__init__.py. Shapes: x: f32[n, t, d],
H heads of width e = d / H; a head's arrays are [n, H, t, e], its scores [n, H, t, t].
This file is the plain formulation, the definition; attention_blocks.py computes the same O by
blocks (FlashAttention's), faster at long contexts; `CausalSelfAttention._as` picks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from funcnn import backend
from funcnn.checks import InputError, integer
from funcnn.layers import attention_blocks
from funcnn.layers.base import Layer, row_keys
from funcnn.layers.dropout import check_rate

STD = 0.02                    # GPT-2's init of c_attn and c_proj: w ~ N(0, 0.02^2), b = 0
# "auto" on a CPU: by blocks (attention_blocks.py) from this context on, t a multiple of the
# block; plain below it (a GPT step at context 64: 1.01x, a wash; benchmarks/attention_blocks.py)
BLOCKS_MIN_CONTEXT = 128


@dataclass(frozen=True)
class CausalSelfAttention(Layer):
    """Multi-head self-attention in which position i sees positions j <= i (GPT-2's, nanoGPT's
    `CausalSelfAttention`): x: f32[n, t, d] -> y: f32[n, t, d], with

        [q, k, v] = x W_qkv + b_qkv          q, k, v in that order along the last axis
        S = q_h k_h^T / sqrt(e)              head h: columns h e .. (h + 1) e of each, e = d / H
        P = softmax(S + M)                   M[i, j] = 0 if j <= i else -inf (the causal mask)
        O_h = P v_h,  y = [O_1 .. O_H] W_out + b_out

    p = {"w_qkv": f32[d, 3d], "b_qkv": f32[3d], "w_out": f32[d, d], "b_out": f32[d]}: nanoGPT's
    c_attn and c_proj transposed (x W here, x W^T in torch.nn.Linear), so a checkpoint maps
    array to array; drawn as GPT-2's, w ~ N(0, 0.02^2) and b = 0. `dropout` drops attention
    weights (entries of P, scaled by 1 / (1 - dropout)) in training, row i's mask from row
    i's key, as `Dropout` does. d must be a multiple of heads.

    Two formulations of O, the same numbers to rounding; `formulation` picks one:
    - "plain": the formulas above as written (this file), P kept for the VJP;
    - "blocks": FlashAttention's (attention_blocks.py): `block` queries x `block` keys at a
      time, the blocks above the diagonal skipped, each row's log-sum-exp kept instead of P
      and P recomputed in the VJP; t must be a multiple of `block`; no dropout;
    - "auto" (the default): "blocks" on a CPU for t >= BLOCKS_MIN_CONTEXT, a multiple of
      `block`, without dropout; "plain" otherwise (and on a GPU, where it is unmeasured)."""
    heads: int
    dropout: float = 0.0
    formulation: str = "auto"
    block: int = 64
    independent_rows = True              # positions mix within a row, never across rows

    def __post_init__(self):
        object.__setattr__(self, "heads", integer("CausalSelfAttention(heads)", self.heads, 1))
        object.__setattr__(self, "dropout", check_rate("CausalSelfAttention(dropout)",
                                                       self.dropout, "an attention weight"))
        object.__setattr__(self, "block", integer("CausalSelfAttention(block)", self.block, 1))
        if self.formulation not in ("auto", "plain", "blocks"):
            raise InputError(f"CausalSelfAttention's formulation must be 'auto', 'plain' or "
                             f"'blocks', got {self.formulation!r}")
        if self.formulation == "blocks" and self.dropout > 0:
            raise InputError(f"CausalSelfAttention's formulation 'blocks' does not drop "
                             f"attention weights, got dropout={self.dropout}; use 'plain' or "
                             "'auto' (plain with dropout)")

    def _as(self, t: int) -> str:
        """The formulation this layer computes with at context t (the one rule)."""
        if self.formulation != "auto":
            return self.formulation
        fits = t >= BLOCKS_MIN_CONTEXT and t % self.block == 0 and self.dropout == 0
        return "blocks" if fits and jax.default_backend() != "gpu" else "plain"

    @property
    def needs_key(self):
        return self.dropout > 0

    def __repr__(self):
        how = "" if self.formulation == "auto" else f", as {self.formulation}"
        block = "" if self.block == 64 else f", block {self.block}"
        return (f"CausalSelfAttention({self.heads} heads"
                f"{f', dropout {self.dropout:g}' if self.dropout else ''}{how}{block})")

    def shape(self, input_shape):
        if len(input_shape) != 2:
            self._fail(f"needs sequences of vectors (t, d), got {input_shape}")
        if input_shape[1] % self.heads:
            self._fail(f"heads = {self.heads} does not divide the width d = {input_shape[1]}: "
                       "each head takes d / heads columns of q, k and v")
        if self.formulation == "blocks" and input_shape[0] % self.block:
            self._fail(f"formulation 'blocks' needs the context t = {input_shape[0]} to be a "
                       f"multiple of block = {self.block}; pass block= a divisor of "
                       f"{input_shape[0]}, or formulation='auto'")
        return input_shape

    def workspace(self, input_shape):
        t, d = input_shape
        if self._as(t) == "blocks":                            # q, k, v, O, y; lse; S and P
            return 5 * t * d + self.heads * (t + 2 * self.block * self.block)
        return 5 * t * d + 2 * self.heads * t * t              # q, k, v, O, y; S and P

    def init(self, key, input_shape, dtype):
        d = input_shape[-1]
        k_qkv, k_out = jax.random.split(key)
        return {"w_qkv": STD * jax.random.normal(k_qkv, (d, 3 * d), dtype),
                "b_qkv": jnp.zeros(3 * d, dtype),
                "w_out": STD * jax.random.normal(k_out, (d, d), dtype),
                "b_out": jnp.zeros(d, dtype)}

    def _split(self, a):
        """f32[n, t, d] -> f32[n, H, t, e]: head h is columns h e .. (h + 1) e."""
        n, t, d = a.shape
        return a.reshape(n, t, self.heads, d // self.heads).transpose(0, 2, 1, 3)

    def _merge(self, a):
        """f32[n, H, t, e] -> f32[n, t, d]: the heads side by side (_split's inverse)."""
        n, heads, t, e = a.shape
        return a.transpose(0, 2, 1, 3).reshape(n, t, heads * e)

    def apply(self, p, x, train=False, key=None):
        n, t, d = x.shape
        qkv = _linear(x, p["w_qkv"], p["b_qkv"])                       # [n, t, 3d]
        q, k, v = (self._split(qkv[..., i * d:(i + 1) * d]) for i in range(3))
        if self._as(t) == "blocks":                                    # the same O, by blocks
            o, lse = attention_blocks.attend(q, k, v, 1 / math.sqrt(d // self.heads), self.block)
            y = _linear(self._merge(o), p["w_out"], p["b_out"])
            return y, (x, q, k, v, o, lse)
        s = jnp.einsum("nhie,nhje->nhij", q, k) / math.sqrt(d // self.heads)
        causal = jnp.tril(jnp.ones((t, t), bool))                      # j <= i
        s = jnp.where(causal[None, None], s, -jnp.inf)
        s = s - s.max(axis=-1, keepdims=True)                          # the diagonal: finite
        e = jnp.exp(s)
        prob = e / e.sum(axis=-1, keepdims=True)                       # P = softmax(S + M)
        drop = None
        if train and self.dropout > 0:                                 # P_d = P m / (1 - rate)
            draw = lambda r: jax.random.bernoulli(r, 1.0 - self.dropout, (self.heads, t, t))
            keep = jax.vmap(draw)(row_keys(key, n))                    # row i's from key[i]
            drop = jnp.where(keep, 1.0 / (1.0 - self.dropout), 0.0).astype(x.dtype)
        used = prob if drop is None else prob * drop
        o = jnp.einsum("nhij,nhje->nhie", used, v)                     # O_h = P v_h
        o = self._merge(o)                                             # heads side by side
        return _linear(o, p["w_out"], p["b_out"]), (x, q, k, v, prob, drop, used, o)

    def vjp(self, p, cache, g):
        x = cache[0]
        t, d = x.shape[1:]
        if self._as(t) == "blocks":                                    # P recomputed by blocks
            _, q, k, v, o, lse = cache                                 # o: heads apart
            dp_out, do = _linear_vjp(self._merge(o), p["w_out"], g)    # as below
            dq, dk, dv = attention_blocks.attend_vjp(q, k, v, o, lse, self._split(do),
                                                     1 / math.sqrt(d // self.heads), self.block)
            return self._qkv_vjp(p, x, dq, dk, dv, dp_out)
        _, q, k, v, prob, drop, used, o = cache
        # y = O W_out + b_out  =>  dW_out = O^T g, db_out = sum of g, dO = g W_out^T
        dp_out, do = _linear_vjp(o, p["w_out"], g)
        do = self._split(do)                                           # [n, H, t, e]
        # O = P_d v  =>  dP_d = dO v^T,  dv = P_d^T dO;  P_d = P m / (1 - rate): dP = dP_d m ..
        dprob = jnp.einsum("nhie,nhje->nhij", do, v)
        dv = jnp.einsum("nhij,nhie->nhje", used, do)
        if drop is not None:
            dprob = dprob * drop
        # P = softmax(S) row by row  =>  dS = P * (dP - rowsum(dP * P)); a masked entry has
        # P = 0, so dS = 0 there: the mask needs no VJP of its own
        ds = prob * (dprob - (dprob * prob).sum(axis=-1, keepdims=True))
        ds = ds / math.sqrt(d // self.heads)                           # S = q k^T / sqrt(e)
        dq = jnp.einsum("nhij,nhje->nhie", ds, k)                      # dq = dS k
        dk = jnp.einsum("nhij,nhie->nhje", ds, q)                      # dk = dS^T q
        return self._qkv_vjp(p, x, dq, dk, dv, dp_out)

    def _qkv_vjp(self, p, x, dq, dk, dv, dp_out):
        """The gradients, from dq, dk, dv (heads apart) back through the first projection."""
        dqkv = jnp.concatenate([self._merge(a) for a in (dq, dk, dv)], axis=-1)   # [n, t, 3d]
        # [q, k, v] = x W_qkv + b_qkv  =>  dW_qkv = x^T dqkv, db_qkv = sum, dx = dqkv W_qkv^T
        dp_qkv, dx = _linear_vjp(x, p["w_qkv"], dqkv)
        return {"w_qkv": dp_qkv["w"], "b_qkv": dp_qkv["b"],
                "w_out": dp_out["w"], "b_out": dp_out["b"]}, dx


def _linear(x, w, b):
    """x: f32[n, t, a] -> x W + b: f32[n, t, b] at every position alike."""
    return x @ w + b[None, None, :]


def _linear_vjp(x, w, g):
    """g = dL/dz of z = x W + b, all f32[n, t, .] -> ({"w": x^T g, "b": sum of g}, g W^T), the
    sums over every row and position (x^T g as one product over the n t vectors)."""
    a, b = w.shape
    x2, g2 = x.reshape(-1, a), g.reshape(-1, b)
    return {"w": backend.copied(x2.T) @ g2, "b": g2.sum(axis=0)}, g @ w.T
