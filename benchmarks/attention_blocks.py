"""CausalSelfAttention's two formulations timed side by side: "plain" (attention.py, P kept) and
"blocks" (attention_blocks.py, FlashAttention's: blocks of queries x keys, the blocks above the
diagonal skipped, P recomputed in the VJP), in GPT training steps at nanoGPT's CPU recipe (4
blocks x 4 heads, 128 wide, batch 12) at each context, with what each keeps in memory. What
set BLOCKS_MIN_CONTEXT, the context from which "auto" computes by blocks on a CPU.

    python benchmarks/attention_blocks.py [--steps 20 --repeats 5] [--contexts 64 128 256 512]
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from functools import partial

HERE = os.path.dirname(os.path.abspath(__file__))
for _path in (HERE, os.path.dirname(HERE)):     # `timing` beside us, funcnn one folder up
    if _path not in sys.path:
        sys.path.insert(0, _path)

import jax                                      # noqa: E402
import jax.extend.core                          # noqa: E402
import jax.numpy as jnp                         # noqa: E402
import numpy as np                              # noqa: E402

import funcnn as fn                             # noqa: E402
from gpt import steps_of                         # noqa: E402
from timing import CORES, cpu_info, fmt_s, interleave, med, pair_ratio, timed   # noqa: E402

L = fn.layers
VOCAB, BATCH, LAYERS, HEADS, WIDTH = 65, 12, 4, 4, 128
BLOCKS = {64: (32, 64), 128: (32, 64), 256: (32, 64, 128), 512: (64, 128)}   # blocks tried


def gpt(vocab: int, context: int, layers: int, heads: int, width: int, attention):
    """shakespeare_char.gpt's network (no dropout) with `attention(heads)` as each block's
    attention: partial(L.CausalSelfAttention, formulation="plain"), say."""
    def block():
        return L.serial(
            L.Residual(L.serial(L.LayerNorm(), attention(heads))),
            L.Residual(L.serial(L.LayerNorm(), L.Dense(4 * width, fn.math.gelu),
                                L.Dense(width))))
    return fn.model.network(
        L.serial(L.Embedding(vocab, width), L.PositionalEmbedding(context),
                 *[block() for _ in range(layers)], L.LayerNorm(), L.Dense(vocab)),
        input_shape=(context,), loss=fn.losses.softmax_cross_entropy)


def kept_bytes(net, params, context: int) -> int:
    """Bytes the forward keeps for the backward: the caches of a training forward on a batch,
    each distinct array once (plain attention's cache names P twice, as P and P_d)."""
    x = jnp.zeros((BATCH, context), jnp.int32)
    jaxpr = jax.make_jaxpr(lambda p: net.layer.apply(p, x, True, None)[1])(params)
    distinct = {id(v): v for v in jaxpr.jaxpr.outvars if isinstance(v, jax.extend.core.Var)}
    return sum(math.prod(v.aval.shape) * v.aval.dtype.itemsize for v in distinct.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=50, help="steps per timed call (50)")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repeats (5)")
    parser.add_argument("--contexts", type=int, nargs="+", default=[64, 128, 256, 512],
                        choices=sorted(BLOCKS), help="the contexts (default: all four)")
    args = parser.parse_args()
    jax.config.update("jax_num_cpu_devices", CORES)      # as benchmarks/run.py runs section 9
    opt = fn.optim.chain(fn.optim.clip_by_global_norm(1.0),
                         fn.optim.adamw(1e-3, b1=0.9, b2=0.99, weight_decay=0.1,
                                        mask=fn.optim.decay_weights_only))
    tokens = jnp.asarray(np.random.default_rng(0).integers(0, VOCAB, 200_000), jnp.int32)
    key = jax.random.key(1)
    print(f"GPT training steps: {LAYERS} blocks x {HEADS} heads, {WIDTH} wide, batch {BATCH}; "
          f"{args.steps} steps per timed call, {args.repeats} repeats, interleaved")
    print(f"CPU: {cpu_info()}, {CORES} cores")
    print("| context | formulation | ms/step median [min] | tokens/s | its time / plain's "
          "time | kept MiB | XLA temp MiB | compile s | last loss |")
    print("|---|---|---|---|---|---|---|---|---|")
    for context in args.contexts:
        plain = partial(L.CausalSelfAttention, formulation="plain")
        nets = {"plain": gpt(VOCAB, context, LAYERS, HEADS, WIDTH, plain)}
        for b in BLOCKS[context]:
            nets[f"blocks of {b}"] = gpt(VOCAB, context, LAYERS, HEADS, WIDTH, partial(
                L.CausalSelfAttention, formulation="blocks", block=b))
        params = fn.model.init(jax.random.key(0), nets["plain"])   # one tree fits all
        state = opt.init(params)
        runners, memory, compile_s = {}, {}, {}
        for name, net in nets.items():
            start = time.perf_counter()                                # trace, lower, compile
            step = steps_of(net, opt, args.steps, BATCH).lower(key, params, state,
                                                               tokens).compile()
            compile_s[name] = time.perf_counter() - start
            stats = step.memory_analysis()
            temp = getattr(stats, "temp_size_in_bytes", None) if stats is not None else None
            memory[name] = (kept_bytes(net, params, context), temp)
            runners[name] = timed(partial(step, key, params, state, tokens))
            runners[name]()                                            # warm: first run
        times = interleave(runners, args.repeats)
        plain = times["plain"]
        for name, t in times.items():
            kept, temp = memory[name]
            loss = float(np.asarray(runners[name].last[2])[-1])
            print(f"| {context} | {name} | {fmt_s([s / args.steps for s in t], 1e3, 2)} | "
                  f"{args.steps * BATCH * context / med(t):,.0f} | "
                  f"{pair_ratio(t, plain):.2f} | {kept / 2**20:,.1f} | "
                  f"{'n/a' if temp is None else f'{temp / 2**20:,.1f}'} | "
                  f"{compile_s[name]:.1f} | {loss:.4f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
