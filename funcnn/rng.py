"""Keys and draws: the Clojure project's `nn.rng`, with JAX's explicit keys.

Contract: nothing here holds state. Every function that draws takes a key; a caller that
needs several draws splits its key first (`jax.random.split`) and hands one part to each.
Same key, same numbers, on every machine.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from funcnn.checks import InputError, InputTypeError, integer, short_repr

Key = jax.Array  # a typed key, dtype key<fry>, shape ()


def key(seed: int) -> Key:
    """A typed key from an integer seed: `key(1337)` is where the Clojure run starts."""
    seed = integer("seed", seed)
    if not -2**63 <= seed < 2**63:
        raise InputError(f"seed must fit in 64 bits, got {seed}; pick e.g. 1337")
    return jax.random.key(seed)


def check_key(k, name: str = "key") -> Key:
    """Return `k` as a typed key, or raise a TypeError that says how to make one.

    A typed key (`jax.random.key(seed)`) passes through; a legacy `uint32[2]` key
    (`jax.random.PRNGKey(seed)`) is wrapped; anything else (an int, None, a float) is refused.
    Works on tracers too (under `jit` or `vmap`), since it looks only at dtype and shape.
    """
    dtype = getattr(k, "dtype", None)
    shape = getattr(k, "shape", None)
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        if shape != ():
            raise InputTypeError(f"{name} must be a single key (shape ()), got a key array of "
                                 f"shape {shape}; pick one with {name}[0] or split with "
                                 "jax.random.split")
        return k
    if dtype == jnp.uint32 and shape == (2,):
        return jax.random.wrap_key_data(k)
    raise InputTypeError(f"{name} must be a JAX random key, got {type(k).__name__} "
                         f"{short_repr(k)}; pass jax.random.key(seed) (or funcnn.rng.key(seed))")


def draw_uniform(k: Key, shape, lo: float = 0.0, hi: float = 1.0, dtype=jnp.float32) -> jax.Array:
    """Uniform draws in [lo, hi): lo + (hi - lo) u with u uniform in [0, 1), kept below hi
    (in float32, lo + (hi - lo) u can round up to hi itself)."""
    return jax.random.uniform(check_key(k), shape, dtype, minval=lo, maxval=hi)


