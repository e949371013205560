"""Speed workarounds for XLA's backends, fenced off from the math that needs them.

Contract: each function here computes exactly what its name says (the tests hold it to the
plain expression); it exists only because one backend runs the plain expression slowly, and
its comment says which backend, why, and what it bought when measured.
"""
from __future__ import annotations

from jax import lax

SMALL_X = 16_384   # elements: an x up to this size is transposed by a copy (see transposed)


def transposed(x):
    """x.T, copied out when x is small.

    Why: XLA folds a transpose into the matmul that reads it, and its CPU backend then gives
    x^T g to a general routine (YNNPACK, its fast one, takes only untransposed operands) that
    is slow on small and batched products. In `dense_vjp` it took half the time of training
    256 Clojure networks at once (620 ms -> 340 ms with the copy, 2026-12-02). Copying a small
    x costs less; copying Fashion-MNIST's 128 x 784 batch, more (51 us). The barrier only
    keeps XLA from folding the copy away.
    """
    return lax.optimization_barrier(x.T) if x.size <= SMALL_X else x.T
