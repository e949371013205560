"""The autodiff reference: fit's loop with `jax.grad` in place of funcnn's hand-written VJPs.

The same epoch keys, shuffles, batches and dropout masks as `fn.train.fit` (so its losses must
match fit's), each step's gradient from `jax.value_and_grad` of the network's own forward
(`net.layer.apply(train=True)`) and loss, in the pieces fit would run a big step in (so the
two differ by their gradients only), then SGD and BatchNorm's running statistics as fit
moves them. Sections 1 (the MLP) and 7 (the CNNs) time it against fit.
"""
from __future__ import annotations

from functools import partial

import jax
from jax import lax

import funcnn as fn


@partial(jax.jit, static_argnames=("net", "epochs", "batch_size"))
def autodiff_fit(key, params, train, lr, *, net, epochs, batch_size):
    """`epochs` of SGD at `lr` on `train` from `params`. Returns (params, history) as fit does:
    {"train_loss", "train_accuracy"}: f32[epochs], means over each epoch's rows of the values
    before each step."""
    n = train.x.shape[0]
    steps = -(-n // batch_size)

    def loss(params, x, y, w, key):
        out, caches = net.layer.apply(params, x, True, key)
        return net.loss.fn(out, y, w), (out, caches)

    def grads(params, batch, w, key):
        (value, (out, caches)), g = jax.value_and_grad(loss, has_aux=True)(
            params, batch.x, batch.y, w, key)
        return value, g, out, caches

    pieces = fn.pieces.step_pieces(net, batch_size)            # fit's pieces of a big step

    def step(params, inputs):
        rows, w, key = inputs                                 # i32[batch_size], f32[batch_size]
        x, y = train.x[rows], train.y[rows]
        value, g, out, caches = fn.pieces.in_pieces(grads, params, fn.data.Dataset(x, y), w, key,
                                                   pieces)
        new = fn.model.sgd(params, g, lr)                     # p <- p - lr dL/dp
        n_rows = w.sum()                                      # rows that are not padding
        return (fn.model.update_state(net, params, new, caches),   # BatchNorm's statistics
                (value * n_rows, fn.metrics.accuracy(out, y, w) * n_rows))

    def epoch(params, key):
        masks = None
        if net.layer.needs_key:                               # fit's split: shuffle, masks
            key, k_masks = jax.random.split(key)
            masks = jax.random.split(k_masks, steps)
        rows, w = fn.data.batches(key, n, batch_size, train.x.dtype)   # fit's shuffle
        params, (loss_sums, correct) = lax.scan(step, params, (rows, w, masks))
        return params, (loss_sums.sum() / n, correct.sum() / n)

    params, (losses, accuracy) = lax.scan(epoch, params, fn.train.epoch_keys(key, epochs))
    return params, {"train_loss": losses, "train_accuracy": accuracy}
