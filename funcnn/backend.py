"""Speed workarounds for XLA and jax, fenced off from the math and the command line.

Contract: nothing here changes a number, only the time. `copied(x_t)` is x_t itself (the
tests hold it to the plain expression); `sort_columns` sorts as `lax.sort` does;
`keys_through_scan`/`key_from_scan` only change a key's type; `quick_compile` changes how XLA
compiles, not what it computes;
`exit_skipping_teardown` skips jax's teardown once everything is written. Each exists because
one backend is slow at something: its comment says which and why, and docs/performance.md what
it bought when measured; drop it when its backend no longer needs it.
"""
from __future__ import annotations

import os
import sys
from typing import NoReturn

import jax
import jax.numpy as jnp
from jax import lax

COPY_TRANSPOSE_MAX_ELEMENTS = 16_384   # an x.T up to this size is copied out (see copied)


def copied(x_t, always=False):
    """x_t (a transpose, x.T), copied out when it has at most COPY_TRANSPOSE_MAX_ELEMENTS
    elements (or `always`, for a weight matrix): `copied(x.T) @ g` is `x.T @ g`.

    Why: XLA's CPU backend gives a transposed operand to a slow general routine on small and
    batched products; the copy (kept by the barrier) is cheaper (docs/performance.md).
    """
    small = always or x_t.size <= COPY_TRANSPOSE_MAX_ELEMENTS
    return lax.optimization_barrier(x_t) if small else x_t


def sort_columns(x):
    """`lax.sort(x, dimension=0)` for x: u32[N, m], N a power of 2, by a bitonic network.

    Why: XLA's CPU sort calls a comparator per comparison; a sorting network is the same
    min/max on every column (the vector lanes) at once (docs/performance.md). For one column
    it is slower: only `data.shuffles` (many at once) uses it.

    The network: for k = 2, 4, ..., N, and within each k for j = k/2, k/4, ..., 1, compare
    each row i with row i + j (i in the first half of its block of 2j) and swap them unless
    they are in order, ascending where i & k == 0 and descending elsewhere. Two j's at a
    time where it can (one pass over memory instead of two).
    """
    n = x.shape[0]
    k = 2
    while k <= n:
        j = k // 2
        while j >= 1:
            step = 2 if j >= 2 else 1                        # stages j and j/2 in one pass
            group = x.reshape(n // (2 * j), *(2,) * step, j // 2 ** (step - 1), -1)
            rising = ((jnp.arange(n // (2 * j)) * 2 * j) & k) == 0
            rising = rising.reshape(-1, *(1,) * (group.ndim - 1))
            group = _compare_exchange(group, rising, axis=1)              # distance j
            if step == 2:
                group = _compare_exchange(group, rising, axis=2)          # distance j / 2
            x = group.reshape(x.shape)
            j //= 2 ** step
        k *= 2
    return x


def _compare_exchange(group, rising, axis):
    """The pairs along `axis` (size 2) in order: ascending where `rising`, else descending."""
    a, b = jnp.take(group, 0, axis), jnp.take(group, 1, axis)
    lo, hi = jnp.minimum(a, b), jnp.maximum(a, b)
    rising = jnp.squeeze(rising, axis)
    return jnp.stack([jnp.where(rising, lo, hi), jnp.where(rising, hi, lo)], axis)


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

