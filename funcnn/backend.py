"""Speed workarounds for XLA and jax, fenced off from the math and the command line.

Contract: nothing here changes a number, only the time. `copied(x_t)` is x_t itself (the tests hold
it to the plain expression); `keys_through_scan`/`key_from_scan` only change a key's type; `quick_compile` changes how XLA compiles, not what it computes;
`exit_skipping_teardown` skips jax's teardown once everything is written. Each exists because
one backend is slow at something, and its comment says which, why, and what it bought when
measured; drop it when its backend no longer needs it.
"""
from __future__ import annotations

import os
import sys
from typing import NoReturn

import jax
from jax import lax

COPY_TRANSPOSE_MAX_ELEMENTS = 16_384   # an x.T up to this size is copied out (see copied)


def copied(x_t):
    """x_t (a transpose, x.T), copied out when it has at most COPY_TRANSPOSE_MAX_ELEMENTS
    elements: `copied(x.T) @ g` is `x.T @ g`.

    Why: XLA folds a transpose into the matmul that reads it, and its CPU backend then gives
    x^T g to a general routine (YNNPACK, its fast one, takes only untransposed operands) that
    is slow on small and batched products. In `dense_vjp` it took half the time of training
    256 Clojure networks at once (620 ms -> 340 ms with the copy, 2026-12-02; 440 ms -> 265 ms on a Zen 4, 2026-12-04). Copying a small
    x costs less; copying Fashion-MNIST's 128 x 784 batch, more (51 us). The barrier only
    keeps XLA from folding the copy away.
    """
    return lax.optimization_barrier(x_t) if x_t.size <= COPY_TRANSPOSE_MAX_ELEMENTS else x_t


# Keys cross a lax.scan as raw data and are wrapped again inside: jax's key-reuse checker
# (jax_debug_key_reuse, on in the tests) wrongly reports typed keys passed as scan inputs
# under vmap (fit_many). The numbers are the same either way; only the checker needs it.
def keys_through_scan(keys):
    """Typed keys -> their raw data, to be a lax.scan input (see key_from_scan)."""
    return jax.random.key_data(keys)


def key_from_scan(data, impl):
    """A scan input made by keys_through_scan -> the typed key again."""
    return jax.random.wrap_key_data(data, impl=impl)


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

