"""Fashion-MNIST as the sections share it: rows of it, and the 784-width-10 MLP that sections
1, 2, 5 and 6 train (ReLU, logits, softmax cross-entropy), with its matmul flops."""
from __future__ import annotations

import funcnn as fn

CHANCE = 0.1                                             # 10 balanced classes


def rows(ds: fn.data.Dataset, n: int, start: int = 0) -> fn.data.Dataset:
    """Rows start to start + n of `ds`."""
    return fn.data.Dataset(ds.x[start:start + n], ds.y[start:start + n])


def relu_net(width=128, init=fn.model.he()):
    """784 -> width (ReLU) -> 10 logits, softmax cross-entropy."""
    return fn.model.mlp([784, width, 10], hidden=fn.math.relu, output=fn.math.identity,
                        loss=fn.losses.softmax_cross_entropy, init=init)


def mlp_flops(sizes, samples: int = 1) -> int:
    """Matmul flops of one training step on `samples` rows: forward x W, backward x^T g for
    every layer, g W^T for every layer but the first (nothing needs dL/dx of the input)."""
    pairs = list(zip(sizes[:-1], sizes[1:]))
    fwd = sum(2 * d_in * d_out for d_in, d_out in pairs)
    bwd = fwd + sum(2 * d_in * d_out for d_in, d_out in pairs[1:])
    return (fwd + bwd) * samples
