"""Causal attention by blocks (FlashAttention's formulation), CausalSelfAttention's fast path.

The same O as attention.py's plain formulation, computed in blocks of B queries x B keys with an
online softmax (Dao et al. 2022, FlashAttention, algorithms 1 and 2). Query block i reads key
blocks j <= i only, so the blocks above the diagonal, half of S at long contexts, are never
computed; and the t x t probabilities are never kept: the forward keeps each row's log-sum-exp
and the VJP recomputes P one block at a time. On a CPU this pays from t = 128 (benchmarks/
attention_blocks.py: a GPT step 0.93x the plain one's time at context 128, 0.81x at 256, 0.62x
at 512; 1.01x at 64); `CausalSelfAttention._as` picks it (one rule, in attention.py).

Shapes: q, k, v, O: f[n, H, t, e] (heads apart), lse: f[n, H, t]; t a multiple of B. The
loops over blocks are static Python loops (t / B is small): XLA sees one unrolled program.
"""
from __future__ import annotations

import jax.numpy as jnp


def attend(q, k, v, scale: float, block: int):
    """(O, lse) of causal attention, O = softmax(q k^T scale + M) v, by blocks:

        S_ij = q_i k_j^T scale                            f[n, H, B, B], for j <= i
        m' = max(m, rowmax S_ij),  l' = e^(m - m') l + rowsum e^(S_ij - m')
        A' = e^(m - m') A + e^(S_ij - m') v_j            (the online softmax)
        O_i = A / l,  lse_i = m + log l                   after the last key block, j = i
    """
    n, heads, t, e = q.shape
    blocks = _blocks(t, block)
    causal = jnp.tril(jnp.ones((block, block), bool))[None, None]        # within S_ii: j <= i
    o, lse = [], []
    for i, rows in enumerate(blocks):
        m = jnp.full((n, heads, block), -jnp.inf, q.dtype)                # running max
        l = jnp.zeros((n, heads, block), q.dtype)                         # running sum
        acc = jnp.zeros((n, heads, block, e), q.dtype)                    # running A
        for j, cols in enumerate(blocks[:i + 1]):
            s = jnp.einsum("nhie,nhje->nhij", q[:, :, rows], k[:, :, cols]) * scale
            if j == i:                                                    # S_ii + M
                s = jnp.where(causal, s, -jnp.inf)
            m_new = jnp.maximum(m, s.max(axis=-1))                        # m' = max(m, rowmax S)
            fade = jnp.exp(m - m_new)                                     # e^(m - m'); 0 at j = 0
            p = jnp.exp(s - m_new[..., None])                             # e^(S - m')
            l = fade * l + p.sum(axis=-1)                                 # l'
            acc = fade[..., None] * acc + jnp.einsum("nhij,nhje->nhie", p, v[:, :, cols])  # A'
            m = m_new
        o.append(acc / l[..., None])                                      # O_i = A / l
        lse.append(m + jnp.log(l))                                        # lse_i = m + log l
    return jnp.concatenate(o, axis=2), jnp.concatenate(lse, axis=-1)


def attend_vjp(q, k, v, o, lse, do, scale: float, block: int):
    """(dq, dk, dv) for dO = dL/dO of attend's O, recomputing P block by block:

        D = rowsum(dO * O)                                (= rowsum(dP * P), row by row)
        P_ij = exp(S_ij - lse_i),  dP_ij = dO_i v_j^T,  dS_ij = P_ij * (dP_ij - D_i)
        dq_i += dS_ij k_j scale,  dk_j += dS_ij^T q_i scale,  dv_j += P_ij^T dO_i
    """
    blocks = _blocks(q.shape[2], block)
    causal = jnp.tril(jnp.ones((block, block), bool))[None, None]
    big_d = (do * o).sum(axis=-1)                                         # D: f[n, H, t]
    dq = [jnp.zeros_like(q[:, :, rows]) for rows in blocks]
    dk = [jnp.zeros_like(k[:, :, rows]) for rows in blocks]
    dv = [jnp.zeros_like(v[:, :, rows]) for rows in blocks]
    for i, rows in enumerate(blocks):
        for j, cols in enumerate(blocks[:i + 1]):
            s = jnp.einsum("nhie,nhje->nhij", q[:, :, rows], k[:, :, cols]) * scale
            if j == i:
                s = jnp.where(causal, s, -jnp.inf)                        # P = 0 above: dS = 0
            p = jnp.exp(s - lse[:, :, rows, None])                        # P_ij = exp(S - lse_i)
            dp = jnp.einsum("nhie,nhje->nhij", do[:, :, rows], v[:, :, cols])   # dO_i v_j^T
            ds = p * (dp - big_d[:, :, rows, None])                       # dS = P * (dP - D)
            dq[i] += jnp.einsum("nhij,nhje->nhie", ds, k[:, :, cols]) * scale
            dk[j] += jnp.einsum("nhij,nhie->nhje", ds, q[:, :, rows]) * scale
            dv[j] += jnp.einsum("nhij,nhie->nhje", p, do[:, :, rows])
    join = lambda a: jnp.concatenate(a, axis=2)
    return join(dq), join(dk), join(dv)


def _blocks(t: int, block: int) -> list[slice]:
    """Positions 0 .. t - 1 in t / block slices of `block` (block divides t: the caller's
    rule sees to it)."""
    return [slice(i * block, (i + 1) * block) for i in range(t // block)]
