"""How every benchmark here takes and reports its times.

A runner is a function of no arguments that makes one call and returns the seconds it took;
`timed(call)` makes one, and keeps what the call returned on `runner.last` (for the checks).
`interleave` calls every runner once per repeat, in a new shuffled order each repeat, so the
rows of a table ran seconds apart under the same load (this machine is shared and noisy).
Times are given as `median [min]` over the repeats (`fmt_s`), ratios as `median of the
per-repeat ratios [ratio of the mins]` (`fmt_ratio`). Compile time is jax's own account
(`CompileClock`). This module does not import funcnn: `cli_phases.py` imports it first and
then times `import funcnn`.
"""
from __future__ import annotations

import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

CORES = len(os.sched_getaffinity(0))
SETTLE_S = 0.3   # pause before each call where multi-thread rivals run (see interleave)


def med(v):
    return statistics.median(v)


def interleave(runners: dict, repeats: int, settle: float = 0.0) -> dict[str, list[float]]:
    """Call every runner (a function returning seconds) once per repeat, in a new shuffled
    order each repeat, `settle` seconds after the previous call. Sections with multi-thread
    rivals settle: after a multi-thread BLAS or PyTorch call its idle threads spin for up to
    ~0.2 s and slow whatever runs next, and a rotating order always puts the same runner next
    (funcnn fit after the 2-thread NumPy loop: 15% slower). The others do not: a short call
    made after a pause runs colder."""
    names = list(runners)
    times = {name: [] for name in names}
    order = np.random.default_rng(0)                  # fixed: the same schedule every run
    for _ in range(repeats):
        for i in order.permutation(len(names)):
            time.sleep(settle)
            times[names[i]].append(runners[names[i]]())
    return times


def timed(call):
    """`call` as a runner for `interleave`: each run waits for the result, keeps it on
    `run.last` (for the accuracy check) and returns the seconds it took."""
    def run():
        start = time.perf_counter()
        run.last = jax.block_until_ready(call())
        return time.perf_counter() - start
    return run


def ratios(slow: list[float], fast: list[float]) -> list[float]:
    """The per-repeat ratios slow / fast (each pair ran in the same repeat, under one load)."""
    return [s / f for s, f in zip(slow, fast, strict=True)]


def pair_ratio(slow: list[float], fast: list[float]) -> float:
    """Median of the per-repeat ratios slow / fast."""
    return med(ratios(slow, fast))


def fmt_ratio(slow: list[float], fast: list[float]) -> str:
    """`median of per-repeat ratios [ratio of the mins]`: the second is the two at their best,
    nearest to an idle machine."""
    return f"{pair_ratio(slow, fast):.2f}x [{min(slow) / min(fast):.2f}x]"


def fmt_s(times: list[float], scale: float = 1.0, digits: int = 3) -> str:
    """`median [min]` of times, multiplied by `scale`."""
    return f"{med(times) * scale:.{digits}f} [{min(times) * scale:.{digits}f}]"


def threads(n: int) -> str:
    """A row's thread count: '1 thread', '2 threads'."""
    return f"{n} thread{'s' if n > 1 else ''}"


class CompileClock:
    """Seconds jax spent compiling (XLA backend; and tracing + lowering), read as deltas."""
    EVENTS = {"/jax/core/compile/backend_compile_duration": "xla",
              "/jax/core/compile/jaxpr_trace_duration": "trace",
              "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower"}

    def __init__(self):
        self.total = {"xla": 0.0, "trace": 0.0, "lower": 0.0}
        jax.monitoring.register_event_duration_secs_listener(self._on_event)

    def _on_event(self, event, seconds, **kwargs):
        if event in self.EVENTS:
            self.total[self.EVENTS[event]] += seconds

    def measure(self, f):
        """Run f(); return (its result, wall s, XLA compile s, trace + lower s)."""
        before = dict(self.total)
        start = time.perf_counter()
        result = f()
        wall = time.perf_counter() - start
        xla = self.total["xla"] - before["xla"]
        rest = sum(self.total[k] - before[k] for k in ("trace", "lower"))
        return result, wall, xla, rest


def matmul_timer(m, k, n, lhs_t, rhs_t, steps, device=None):
    """A runner timing one float32 product [m, k] x [k, n] (seconds per product): `steps` of
    them in a jitted loop, on 4 distinct left sides, summed so none is dead code; the left
    side stored transposed if `lhs_t`, the right if `rhs_t`; on `device` if given (else jax's
    default). The machine's matmul rate, for the roofline and the "share of" columns."""
    keys = jax.random.split(jax.random.key(0), 2)
    a = jax.random.normal(keys[0], (4, k, m) if lhs_t else (4, m, k), jnp.float32)
    b = jax.random.normal(keys[1], (n, k) if rhs_t else (k, n), jnp.float32)
    a, b = jax.device_put((a, b), device)

    @jax.jit
    def loop(a, b):
        def body(i, acc):
            lhs = a[i % 4].T if lhs_t else a[i % 4]
            return acc + lhs @ (b.T if rhs_t else b)
        return jax.lax.fori_loop(0, steps, body, jnp.zeros((m, n), jnp.float32))

    def run():
        start = time.perf_counter()
        jax.block_until_ready(loop(a, b))
        return (time.perf_counter() - start) / steps
    return run


def cpu_info() -> str:
    """The CPU the times come from: model, family and its SIMD extensions."""
    fields = {}
    with open("/proc/cpuinfo") as f:
        for line in f:
            if ":" in line:
                k, v = (s.strip() for s in line.split(":", 1))
                fields.setdefault(k, v)
    flags = set(fields.get("flags", "").split())
    simd = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile") if f in flags]
    return (f"{fields.get('model name', platform.processor())} (family {fields.get('cpu family')}"
            f", model {fields.get('model')}; {' '.join(simd)})")
