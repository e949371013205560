"""A big batch in pieces of rows: the same numbers as the whole batch, less memory at once.

A speed path beside `funcnn.model.backprop` and `forward`, which read as the whole-batch
algorithm; `step_pieces` is the one rule that chooses it. A training step whose rows would need
more than PIECE_FLOATS floats of workspace runs them in pieces, one after another, and sums
their gradients weighted by each piece's share of the rows' weights: a piece's activations and
patch matrices stay in the cache (measurements: docs/performance.md). Only a network whose
every layer says its rows are independent is split. A big evaluation likewise (`evaluate`).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from funcnn import backend
from funcnn import layers as L
from funcnn.data import Dataset

EVAL_FLOATS = 1 << 25           # an evaluation needing more floats at once runs in pieces
PIECE_FLOATS = 1 << 20          # a piece's workspace: it stays in a core's cache
PIECE_ROWS = 32                 # a training piece's fewest rows: fewer starve the products


def step_pieces(net, n: int) -> int:
    """How many pieces a training step on n rows runs in: pieces of PIECE_FLOATS floats of
    workspace, but of no fewer than PIECE_ROWS rows; 1 unless every layer says its rows are
    independent (BatchNorm's are not, nor a layer of your own that does not say so), or if
    PIECE_ROWS rows would need over 4 PIECE_FLOATS (a piece that feeds the products well
    would not stay in the cache)."""
    per_row = net.layer.workspace(net.input_shape)
    rows = max(PIECE_ROWS, PIECE_FLOATS // per_row)
    if not net.layer.independent_rows or n <= rows or rows * per_row > 4 * PIECE_FLOATS:
        return 1
    return -(-n // rows)


def in_pieces(grads, params, batch, w, key, pieces: int):
    """grads(params, batch, w, key) -> (loss, dL/dparams, output, caches), run on `pieces`
    slices of `rows` rows in turn (a lax.scan) -> the whole batch's (loss, dL/dparams,
    output, None); one piece is grads' own call, caches and all. With S = sum_i w_i and S_p a
    piece's sum, L = sum_i w_i l_i / S = sum_p (S_p / S) L_p, and the gradient likewise. The
    last slice ends at row n; rows in it that an earlier piece had count with weight 0 (so
    nothing is copied or padded). `key` is split into one key per row before the rows are
    cut, and each piece takes its rows' keys: a row draws the dropout mask it would draw in
    the whole batch, so the pieces' sum is the gradient of the whole batch's loss."""
    if pieces == 1:
        return grads(params, batch, w, key)
    n = batch.x.shape[0]
    rows = -(-n // pieces)
    impl = None if key is None else jax.random.key_impl(key)
    keys = None if key is None else backend.keys_through_scan(L.row_keys(key, n))
    total = w.sum()

    def piece(g_sum, i):
        start = jnp.minimum(i * rows, n - rows)
        x, y, w_p = (lax.dynamic_slice_in_dim(a, start, rows) for a in (batch.x, batch.y, w))
        w_p = jnp.where(start + jnp.arange(rows) >= i * rows, w_p, 0)   # not counted before
        share = w_p.sum() / total
        w_p = jnp.where(share > 0, w_p, 1.0)        # a piece of padding only: counted 0 times
        key_p = None if keys is None else backend.key_from_scan(
            lax.dynamic_slice_in_dim(keys, start, rows), impl)    # the piece's rows' keys
        loss, g, out, _ = grads(params, Dataset(x, y), w_p, key_p)
        return jax.tree.map(lambda s, d: s + share * d, g_sum, g), (share * loss, out)

    zeros = jax.tree.map(jnp.zeros_like, params)
    g, (losses, out) = lax.scan(piece, zeros, jnp.arange(pieces))
    before_last = (pieces - 1) * rows                # the last piece's rows from there on
    out = jnp.concatenate([out[:-1].reshape(before_last, *out.shape[2:]),
                           out[-1, before_last - (n - rows):]])
    return losses.sum(), g, out, None


def evaluate(apply, x, per_row: int):
    """apply(x) -> out, for x: f[n, ...] whose rows need `per_row` floats each; over
    EVAL_FLOATS in all, in equal pieces of at most PIECE_FLOATS (a lax.map), the last one
    padded a little and cut back: the same numbers as apply(x)."""
    n = x.shape[0]
    if n * per_row <= EVAL_FLOATS:
        return apply(x)
    count = -(-n // max(1, PIECE_FLOATS // per_row))
    rows = -(-n // count)
    x = jnp.concatenate([x, jnp.zeros((count * rows - n, *x.shape[1:]), x.dtype)])
    out = lax.map(apply, x.reshape(count, rows, *x.shape[1:]))
    return out.reshape(count * rows, *out.shape[2:])[:n]
