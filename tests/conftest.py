"""Suite-wide settings: key reuse is an error, silent rank broadcasting is an error, and an
`x64` fixture turns float64 on for one test and restores the setting after it. A float32
result is judged against the float64 truth within `float32_bound`, derived below.

Compiling is most of the suite's time (hundreds of small programs, each run once), so the
suite compiles as funcnn's small examples do (`funcnn.backend.quick_compile`: no LLVM
optimisation, XLA's older fusion emitters; 2.3x less time for the gradient checks) and keeps
a compilation cache for the run (a program another test built is not compiled again). What a
test checks depends on neither: the float32 bounds below hold for any order of summation, and
the bitwise checks compare two runs of one build. The few tests that compute much (4,000
shuffles, a CNN's epochs, the multi-process runs) compile as a user's run does: `XLA_DEFAULTS`
per program, or `environ_of_a_user()` for a process they start. `FUNCNN_TEST_XLA_DEFAULTS=1
pytest` runs the whole suite with XLA's defaults (about twice as long).
"""
import os
import shutil
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

EPS32 = 2.0 ** -23      # float32's epsilon, the gap from 1 to the next float32; u = EPS32 / 2


# XLA's own defaults for the flags quick_compile changes: jax.jit(f, compiler_options=...)
XLA_DEFAULTS = {"xla_backend_optimization_level": 3, "xla_cpu_use_fusion_emitters": True}
_USER_FLAGS = "FUNCNN_TEST_USER_XLA_FLAGS"     # XLA_FLAGS as the user set them, for children
_CACHE = "FUNCNN_TEST_COMPILATION_CACHE"       # the run's cache (a folder per xdist worker)


def pytest_configure(config):
    import funcnn.backend
    os.environ.setdefault(_USER_FLAGS, os.environ.get("XLA_FLAGS", ""))
    if not os.environ.get("FUNCNN_TEST_XLA_DEFAULTS"):
        funcnn.backend.quick_compile()                        # before XLA starts
    if _CACHE not in os.environ:                              # the first process of the run
        os.environ[_CACHE] = tempfile.mkdtemp(prefix="funcnn-tests-xla-")
        config._funcnn_owns_cache = True
    # a folder per worker process: JAX writes an entry non-atomically, and a worker reading
    # another's half-written entry recompiles with a warning
    jax.config.update("jax_compilation_cache_dir",
                      os.path.join(os.environ[_CACHE], os.environ.get("PYTEST_XDIST_WORKER", "0")))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)   # every program
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    jax.config.update("jax_debug_key_reuse", True)          # a key used twice fails the test
    jax.config.update("jax_numpy_rank_promotion", "raise")  # as equinox's tests do


def pytest_unconfigure(config):
    if getattr(config, "_funcnn_owns_cache", False):          # empty again for the next run
        shutil.rmtree(os.environ.pop(_CACHE), ignore_errors=True)


def environ_of_a_user(**changes) -> dict:
    """os.environ for a process a test starts that compiles as a user's run does: XLA_FLAGS
    as the user set them (without quick_compile's), plus `changes`."""
    env = dict(os.environ, XLA_FLAGS=os.environ.get(_USER_FLAGS, ""))
    env.update(changes)
    return env


@pytest.fixture
def x64():
    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", before)


@pytest.fixture
def compiles():
    """compiles() -> how many XLA programs were compiled since the test started."""
    import jax.monitoring
    count = [0]
    def listen(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            count[0] += 1
    jax.monitoring.register_event_duration_secs_listener(listen)
    yield lambda: count[0]
    jax.monitoring.unregister_event_duration_listener(listen)


@pytest.fixture
def keys():
    """A fresh key per draw: keys(7) -> 7 keys from seed 0 (fresh objects, never reused)."""
    def make(n, seed=0):
        return list(jax.random.split(jax.random.key(seed), n))
    return make


# --- float32 against the float64 truth ---------------------------------------------------------
# A float32 gradient is judged against the same computation on the same numbers in float64 (the
# truth, to ~1e-16), not against another float32 computation, and within a bound derived from
# float32's precision and the computation's length, not a constant tuned on one machine (1e-4
# held on a Zen 4 and failed on a Zen 3: 1.45e-4 on correct code).
#
# The model (Higham, Accuracy and Stability of Numerical Algorithms, 2nd ed., section 3.1):
# a float32 sum of K terms, in any order, with or without FMA, is within gamma_K |terms| of the
# exact sum, gamma_K = K u / (1 - K u) ~ K u, u = EPS32 / 2. A chain of such steps (the forward
# pass, then each layer's VJP) compounds, and to first order the relative errors add: so K is
# the number of terms of all the sums along the longest chain, an elementwise operation
# counting 1 and exp, log or tanh 4 (XLA computes them to a few ulp).
#
# The error is measured in units of the largest |truth| in the whole tree (`float32_errors`),
# the size of the terms the sums add; not per leaf, since rounding errors scale with the terms,
# not with the result: a leaf whose true gradient is zero (a bias before a BatchNorm) is pure
# rounding noise in float32, and judged against itself, or gradcheck's floor of 1e-3 of the
# largest, it looks 1e3x worse than it is: the small CNN's conv 2 bias was the worst leaf of
# the failed float32 gradcheck (6.8e-5 on a Zen 4, every other leaf below 2.4e-6). That
# normalization and the conditioning of some steps (dividing by a small standard deviation,
# 1 - a near a = 1) can amplify the first-order bound a little: we allow a factor 4 in units
# of u, 2 K EPS32 in all.
#
# Worst case K, not the typical sqrt(K) (random roundings of either sign): the typical error
# depends on the order a CPU's kernels sum in (AVX2 and AVX-512 block a dot product
# differently), the worst case on no order. Measured on a Zen 4 (AVX-512), the tests' errors
# sit 5x (softmax's VJP, the worst of 50 draws: 8.5 EPS32 against 44) to 350x (the small CNN:
# 3.3 EPS32 against 1,150; its worst of 60 random draws, 152) below their bounds, and the CNN's
# gradient off by 1e-3 (8,400 EPS32) is still 7x above its bound.

def _float32_bound(k_terms: int) -> float:
    """The largest error a float32 computation whose longest chain of sums adds `k_terms`
    terms may show against the float64 truth, in units of the largest |truth|: 2 K EPS32."""
    return 2 * max(int(k_terms), 1) * EPS32


def _float32_errors(got, truth) -> dict[str, float]:
    """Leaf path -> max |got - truth| / (the largest |truth| in the whole tree). `got` must be
    float32 and `truth` float64: a computation silently promoted to float64 would judge nothing."""
    got, truth = jax.tree.map(np.asarray, (got, truth))
    assert jax.tree.structure(got) == jax.tree.structure(truth), (jax.tree.structure(got),
                                                                   jax.tree.structure(truth))
    dtypes = {str(v.dtype) for v in jax.tree.leaves(got)}, {str(v.dtype) for v in
                                                             jax.tree.leaves(truth)}
    assert dtypes == ({"float32"}, {"float64"}), f"got {dtypes[0]}, truth {dtypes[1]}"
    top = max(float(np.abs(t).max(initial=0.0)) for t in jax.tree.leaves(truth))
    return {jax.tree_util.keystr(path): float(np.abs(g - t).max(initial=0.0)) / top
            for (path, g), t in zip(jax.tree_util.tree_leaves_with_path(got),
                                    jax.tree.leaves(truth), strict=True)}


@pytest.fixture
def float32_bound():
    """float32_bound(K) -> 2 K EPS32: see the derivation above."""
    return _float32_bound


@pytest.fixture
def float32_errors():
    """float32_errors(got, truth) -> {leaf path: error in units of the tree's largest |truth|}."""
    return _float32_errors


@pytest.fixture
def to64():
    """to64(tree) -> the same numbers in float64 (float arrays only; needs x64 on)."""
    def up(tree):
        return jax.tree.map(lambda v: v.astype(jnp.float64)
                            if jnp.issubdtype(v.dtype, jnp.floating) else v, tree)
    return up
