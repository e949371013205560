"""Speed workarounds for XLA and jax, fenced off from the math and the command line.

Contract: nothing here changes a number, only the time. `transposed(x)` is x.T (the tests hold
it to the plain expression); `quick_compile` changes how XLA compiles, not what it computes;
`exit_skipping_teardown` skips jax's teardown once everything is written. Each exists because
one backend is slow at something, and its comment says which, why, and what it bought when
measured; drop it when its backend no longer needs it.
"""
from __future__ import annotations

import os
import sys
from typing import NoReturn

from jax import lax

COPY_TRANSPOSE_MAX_ELEMENTS = 16_384   # an x up to this size is transposed by a copy


def transposed(x):
    """x.T, copied out when x has at most COPY_TRANSPOSE_MAX_ELEMENTS elements.

    Why: XLA folds a transpose into the matmul that reads it, and its CPU backend then gives
    x^T g to a general routine (YNNPACK, its fast one, takes only untransposed operands) that
    is slow on small and batched products. In `dense_vjp` it took half the time of training
    256 Clojure networks at once (620 ms -> 340 ms with the copy, 2026-12-02). Copying a small
    x costs less; copying Fashion-MNIST's 128 x 784 batch, more (51 us). The barrier only
    keeps XLA from folding the copy away.
    """
    return lax.optimization_barrier(x.T) if x.size <= COPY_TRANSPOSE_MAX_ELEMENTS else x.T


# XLA flags for a network that trains in milliseconds, where compiling is nearly all of a run:
# no LLVM optimisation, and XLA's older fusion emitters, which compile in half the time. The
# Clojure run's cold start drops from about 2.7 s to 2.0 s on a 2-core machine, its training
# (0.05 s) and its numbers unchanged; a Fashion-MNIST epoch would run ~20% slower, so only the
# small examples ask for them (QUICK_COMPILE = True in their module). XLA aborts on a flag it
# does not know, so they are set only for the jaxlib releases they were checked on.
QUICK_COMPILE_FLAGS = {"xla_backend_optimization_level": "0",
                       "xla_cpu_use_fusion_emitters": "false"}
QUICK_COMPILE_JAXLIB = ("0.10.",)


def quick_compile() -> None:
    """Add QUICK_COMPILE_FLAGS to XLA_FLAGS (before JAX starts its backend); a flag the user
    set wins."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        if not version("jaxlib").startswith(QUICK_COMPILE_JAXLIB):
            return
    except PackageNotFoundError:
        return
    flags = os.environ.get("XLA_FLAGS", "")
    extra = [f"--{name}={value}" for name, value in QUICK_COMPILE_FLAGS.items()
             if name not in flags]
    os.environ["XLA_FLAGS"] = " ".join([flags, *extra]).strip()


def exit_skipping_teardown(code: int) -> NoReturn:
    """Flush stdout and stderr, then end the process at once with `code` (os._exit).

    Why: tearing jax and XLA down in an orderly way took 0.3 s of the Clojure run's 1.6 s, and
    all there is to keep by then (the pictures, the compilation cache) is on disk. For a
    command's last line only: no atexit handler or finally block runs after it.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:                            # a closed pipe (| head): nothing to keep
            pass
    os._exit(code)


SMALL_X = COPY_TRANSPOSE_MAX_ELEMENTS   # old name, used by funcnn/model.py until renamed
