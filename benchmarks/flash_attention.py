"""Causal self-attention in FlashAttention's manner, measured against funcnn's plain one.

`FlashCausalSelfAttention` is `CausalSelfAttention` (the same params, the same y to rounding)
computed in blocks of `block` queries x `block` keys, with an online softmax (Dao et al. 2022,
FlashAttention, algorithms 1 and 2): its cache keeps q, k, v, the heads' outputs O and each
row's log-sum-exp, never the t x t probabilities, and its VJP recomputes P one block at a time.
It lives here, not in funcnn.layers, until a measurement says it pays on a CPU:

    python benchmarks/flash_attention.py [--steps 50 --repeats 5]

times GPT training steps (nanoGPT's CPU recipe: 4 blocks x 4 heads, 128 wide, batch 12) at
context 64 and 256, plain against flash at each block size, and what each keeps in memory.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import dataclass
from functools import partial

HERE = os.path.dirname(os.path.abspath(__file__))
for _path in (HERE, os.path.dirname(HERE)):     # `timing` beside us, funcnn one folder up
    if _path not in sys.path:
        sys.path.insert(0, _path)

import jax                                      # noqa: E402
import jax.extend.core                          # noqa: E402
import jax.numpy as jnp                         # noqa: E402
import numpy as np                              # noqa: E402

import funcnn as fn                             # noqa: E402
from funcnn.checks import integer               # noqa: E402
from funcnn.layers.attention import CausalSelfAttention, _linear, _linear_vjp   # noqa: E402
from gpt import steps_of                       # noqa: E402
from timing import CORES, cpu_info, fmt_s, interleave, med, pair_ratio, timed   # noqa: E402

L = fn.layers
VOCAB, BATCH, LAYERS, HEADS, WIDTH = 65, 12, 4, 4, 128
CONTEXTS = {64: (32, 64), 256: (32, 64, 128)}   # context -> the flash block sizes tried


@dataclass(frozen=True)
class FlashCausalSelfAttention(CausalSelfAttention):
    """CausalSelfAttention by blocks: x: f32[n, t, d] -> y: f32[n, t, d], the same y, with
    queries and keys cut into t / block blocks of `block` positions (block must divide t).
    Query block i reads key blocks j <= i only (the causal mask inside the diagonal block),
    with a running max m, sum l and accumulator A per row (the online softmax):

        S_ij = q_i k_j^T / sqrt(e)                  f[n, H, block, block]
        m' = max(m, rowmax S_ij),  l' = e^(m - m') l + rowsum e^(S_ij - m')
        A' = e^(m - m') A + e^(S_ij - m') v_j
        O_i = A / l,  lse_i = m + log l             after the last key block j = i

    The cache is (x, q, k, v, O, lse): O: f[n, t, d] (heads side by side), lse: f[n, H, t],
    so P = exp(S - lse) is recomputed block by block in the VJP. Dropout is not supported.

    Static Python loops over the (query block, key block) pairs, not a vectorized form: t /
    block is at most 8 here (36 pairs), XLA sees the unrolled loops as one program, and a
    vectorized form (the pairs stacked into one batched product) would hold about t^2 / 2
    scores per head at once, the very array this variant exists not to hold."""
    block: int = 64

    def __post_init__(self):
        super().__post_init__()
        if self.dropout > 0:
            raise ValueError(f"FlashCausalSelfAttention(dropout) must be 0, got {self.dropout}: "
                             "this variant does not drop attention weights; use "
                             "CausalSelfAttention(heads, dropout=...) for dropout")
        object.__setattr__(self, "block",
                           integer("FlashCausalSelfAttention(block)", self.block, 1))

    def __repr__(self):
        return f"FlashCausalSelfAttention({self.heads} heads, block {self.block})"

    def _blocks(self, t):
        """The query (and key) blocks of t positions: t / block of them, or an InputError."""
        if t % self.block:
            self._fail(f"block = {self.block} does not divide the context t = {t}: each block "
                       f"takes `block` positions; pick a block that divides {t}")
        return [slice(i * self.block, (i + 1) * self.block) for i in range(t // self.block)]

    def shape(self, input_shape):
        out = super().shape(input_shape)
        self._blocks(input_shape[0])
        return out

    def workspace(self, input_shape):
        t, d = input_shape
        return 5 * t * d + self.heads * (t + 2 * self.block * self.block)   # q k v O y, lse; S P

    def apply(self, p, x, train=False, key=None):
        del train, key                                                 # no dropout: no draw
        n, t, d = x.shape
        blocks = self._blocks(t)
        scale = 1.0 / math.sqrt(d // self.heads)
        causal = jnp.tril(jnp.ones((self.block, self.block), bool))[None, None]   # j <= i
        qkv = _linear(x, p["w_qkv"], p["b_qkv"])                       # [n, t, 3d]
        q, k, v = (self._split(qkv[..., i * d:(i + 1) * d]) for i in range(3))
        o, lse = [], []
        for i, rows in enumerate(blocks):
            m = jnp.full((n, self.heads, self.block), -jnp.inf, x.dtype)   # running max
            l = jnp.zeros((n, self.heads, self.block), x.dtype)            # running sum
            acc = jnp.zeros((n, self.heads, self.block, d // self.heads), x.dtype)
            for j, cols in enumerate(blocks[:i + 1]):
                s = jnp.einsum("nhie,nhje->nhij", q[:, :, rows], k[:, :, cols]) * scale
                if j == i:                                             # S_ii + M, M = -inf above
                    s = jnp.where(causal, s, -jnp.inf)
                m_new = jnp.maximum(m, s.max(axis=-1))                 # m' = max(m, rowmax S)
                fade = jnp.exp(m - m_new)                              # e^(m - m'); 0 at j = 0
                e = jnp.exp(s - m_new[..., None])                      # e^(S - m')
                l = fade * l + e.sum(axis=-1)                          # l' = e^(m-m') l + rowsum
                acc = (fade[..., None] * acc                           # A' = e^(m-m') A
                       + jnp.einsum("nhij,nhje->nhie", e, v[:, :, cols]))   # + e^(S-m') v_j
                m = m_new
            o.append(acc / l[..., None])                               # O_i = A / l
            lse.append(m + jnp.log(l))                                 # lse_i = m + log l
        o = jnp.concatenate(o, axis=2)                                 # [n, H, t, e]
        o = o.transpose(0, 2, 1, 3).reshape(n, t, d)                   # heads side by side
        return (_linear(o, p["w_out"], p["b_out"]),
                (x, q, k, v, o, jnp.concatenate(lse, axis=-1)))        # lse: [n, H, t]

    def vjp(self, p, cache, g):
        x, q, k, v, o, lse = cache
        n, t, d = x.shape
        blocks = self._blocks(t)
        scale = 1.0 / math.sqrt(d // self.heads)
        causal = jnp.tril(jnp.ones((self.block, self.block), bool))[None, None]
        # y = O W_out + b_out  =>  dW_out = O^T g, db_out = sum of g, dO = g W_out^T
        dp_out, do = _linear_vjp(o, p["w_out"], g)
        do = self._split(do)                                           # [n, H, t, e]
        big_d = (do * self._split(o)).sum(axis=-1)                     # D = rowsum(dO * O)
        dq = [jnp.zeros_like(q[:, :, rows]) for rows in blocks]
        dk = [jnp.zeros_like(k[:, :, rows]) for rows in blocks]
        dv = [jnp.zeros_like(v[:, :, rows]) for rows in blocks]
        for i, rows in enumerate(blocks):
            for j, cols in enumerate(blocks[:i + 1]):
                s = jnp.einsum("nhie,nhje->nhij", q[:, :, rows], k[:, :, cols]) * scale
                if j == i:
                    s = jnp.where(causal, s, -jnp.inf)                 # P = 0 above: dS = 0
                prob = jnp.exp(s - lse[:, :, rows, None])              # P_ij = exp(S_ij - lse_i)
                dprob = jnp.einsum("nhie,nhje->nhij", do[:, :, rows], v[:, :, cols])  # dO_i v_j^T
                ds = prob * (dprob - big_d[:, :, rows, None])          # dS = P * (dP - D)
                dq[i] += jnp.einsum("nhij,nhje->nhie", ds, k[:, :, cols]) * scale  # dS k_j/sqrt(e)
                dk[j] += jnp.einsum("nhij,nhie->nhje", ds, q[:, :, rows]) * scale  # dS^T q_i/..
                dv[j] += jnp.einsum("nhij,nhie->nhje", prob, do[:, :, rows])   # dv_j += P^T dO_i
        merge = lambda a: jnp.concatenate(a, axis=2).transpose(0, 2, 1, 3).reshape(n, t, d)
        dqkv = jnp.concatenate([merge(dq), merge(dk), merge(dv)], axis=-1)   # [n, t, 3d]
        # [q, k, v] = x W_qkv + b_qkv  =>  dW_qkv = x^T dqkv, db_qkv = sum, dx = dqkv W_qkv^T
        dp_qkv, dx = _linear_vjp(x, p["w_qkv"], dqkv)
        return {"w_qkv": dp_qkv["w"], "b_qkv": dp_qkv["b"],
                "w_out": dp_out["w"], "b_out": dp_out["b"]}, dx


def gpt(vocab: int, context: int, layers: int, heads: int, width: int, attention):
    """shakespeare_char.gpt's network (no dropout) with `attention(heads)` as each block's
    attention: L.CausalSelfAttention, or partial(FlashCausalSelfAttention, block=32)."""
    def block():
        return L.serial(
            L.Residual(L.serial(L.LayerNorm(), attention(heads))),
            L.Residual(L.serial(L.LayerNorm(), L.Dense(4 * width, fn.math.gelu),
                                L.Dense(width))))
    return fn.model.network(
        L.serial(L.Embedding(vocab, width), L.PositionalEmbedding(context),
                 *[block() for _ in range(layers)], L.LayerNorm(), L.Dense(vocab)),
        input_shape=(context,), loss=fn.losses.softmax_cross_entropy)


def kept_bytes(net, params, context: int) -> int:
    """Bytes the forward keeps for the backward: the caches of a training forward on a batch,
    each distinct array once (plain attention's cache names P twice, as P and P_d)."""
    x = jnp.zeros((BATCH, context), jnp.int32)
    jaxpr = jax.make_jaxpr(lambda p: net.layer.apply(p, x, True, None)[1])(params)
    distinct = {id(v): v for v in jaxpr.jaxpr.outvars if isinstance(v, jax.extend.core.Var)}
    return sum(math.prod(v.aval.shape) * v.aval.dtype.itemsize for v in distinct.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=50, help="steps per timed call (50)")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repeats (5)")
    args = parser.parse_args()
    jax.config.update("jax_num_cpu_devices", CORES)      # as benchmarks/run.py runs section 9
    opt = fn.optim.chain(fn.optim.clip_by_global_norm(1.0),
                         fn.optim.adamw(1e-3, b1=0.9, b2=0.99, weight_decay=0.1,
                                        mask=fn.optim.decay_weights_only))
    tokens = jnp.asarray(np.random.default_rng(0).integers(0, VOCAB, 200_000), jnp.int32)
    key = jax.random.key(1)
    print(f"GPT training steps: {LAYERS} blocks x {HEADS} heads, {WIDTH} wide, batch {BATCH}; "
          f"{args.steps} steps per timed call, {args.repeats} repeats, interleaved")
    print(f"CPU: {cpu_info()}, {CORES} cores")
    print("| context | implementation | ms/step median [min] | tokens/s | flash time / plain "
          "time | kept MiB | XLA temp MiB | compile s | last loss |")
    print("|---|---|---|---|---|---|---|---|---|")
    for context, block_sizes in CONTEXTS.items():
        nets = {"plain": gpt(VOCAB, context, LAYERS, HEADS, WIDTH, L.CausalSelfAttention)}
        for b in block_sizes:
            nets[f"flash, block {b}"] = gpt(VOCAB, context, LAYERS, HEADS, WIDTH,
                                            partial(FlashCausalSelfAttention, block=b))
        params = fn.model.init(jax.random.key(0), nets["plain"])   # one tree fits all
        state = opt.init(params)
        runners, memory, compile_s = {}, {}, {}
        for name, net in nets.items():
            start = time.perf_counter()                                # trace, lower, compile
            step = steps_of(net, opt, args.steps, BATCH).lower(key, params, state,
                                                               tokens).compile()
            compile_s[name] = time.perf_counter() - start
            stats = step.memory_analysis()
            temp = getattr(stats, "temp_size_in_bytes", None) if stats is not None else None
            memory[name] = (kept_bytes(net, params, context), temp)
            runners[name] = timed(partial(step, key, params, state, tokens))
            runners[name]()                                            # warm: first run
        times = interleave(runners, args.repeats)
        plain = times["plain"]
        for name, t in times.items():
            kept, temp = memory[name]
            loss = float(np.asarray(runners[name].last[2])[-1])
            print(f"| {context} | {name} | {fmt_s([s / args.steps for s in t], 1e3, 2)} | "
                  f"{args.steps * BATCH * context / med(t):,.0f} | "
                  f"{pair_ratio(t, plain):.2f} | {kept / 2**20:,.1f} | "
                  f"{'n/a' if temp is None else f'{temp / 2**20:,.1f}'} | "
                  f"{compile_s[name]:.1f} | {loss:.4f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
