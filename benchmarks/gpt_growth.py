"""Section 9b of `benchmarks/run.py` [gpt_growth]: how a GPT training step's cost grows with
the context, up to nanoGPT's GPU recipe, and what a step keeps in memory; funcnn against
PyTorch eager.

    python benchmarks/run.py --only gpt_growth

The shapes (blocks x heads x width, context, batch): nanoGPT's CPU recipe 4 x 4 x 128 at
context 64, 128 and 256, batch 12; and its GPU recipe 6 x 6 x 384, context 256, batch 64 (no
dropout here, in either). funcnn: `fn.train.fit_steps` with section 9's optimizer; PyTorch:
`rivals/torch_gpt.py`, eager, at every core. The time per token is set beside the FLOPs per
token (`token_flops`), and the time per GFLOP beside that of the CPU recipe's shape: where it
strays by more than 1.5x the time does not follow the FLOPs. Then memory, for each shape: what
the forward keeps for the backward (funcnn: the layers' caches; PyTorch: the tensors autograd
saves), XLA's peak of temporary buffers in funcnn's compiled steps, and PyTorch's peak over
one step (resident memory, in a process of its own).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import Literal

import funcnn as fn
from funcnn.examples import shakespeare_char
from gpt import steps_of
from rivals import torch_gpt
from timing import SETTLE_S, cpu_info, fmt_s, interleave, med, pair_ratio, threads, timed

VOCAB = 65
RECIPE = torch_gpt.Shape(VOCAB, 64, 12, 4, 4, 128)           # the CPU recipe: 1.00x
MIB = 2**20


class Config(NamedTuple):
    """One row of the grid: its label, shape, steps per timed call, FLOPs per token."""
    label: str
    shape: torch_gpt.Shape
    steps: int
    flops: float          # a training step's matmul FLOPs per token
    attention: float      # attention's part of them

    @property
    def tokens(self) -> int:                  # per step
        return self.shape.batch * self.shape.context


def token_flops(shape: torch_gpt.Shape) -> tuple[float, float]:
    """(a training step's matmul FLOPs per token, attention's part of them). Forward, per
    block: 2 x 12 d^2 for the products with the weights (x W_qkv: 3 d^2, W_out: d^2, the MLP's
    two: 4 d^2 each) and 2 x 2 t d for S = q k^T and O = P v over the full t x t (what funcnn
    computes; PyTorch's causal kernel skips the blocks above the diagonal, about half of
    them); then 2 d vocab for the logits. The embeddings are gathers: 0. Backward: twice the
    forward (dL/dW and dL/dx of each product)."""
    _, t, _, layers, _, d = shape
    attention = 3 * layers * 4 * t * d
    return 3 * (layers * 24 * d * d + 2 * d * shape.vocab) + attention, attention


def gpt_growth(bench):
    plan, torch = bench.plan, bench.torch
    n_threads = max(bench.threads)
    opt = fn.optim.chain(fn.optim.clip_by_global_norm(1.0),
                         fn.optim.adamw(1e-3, b1=0.9, b2=0.99, weight_decay=0.1,
                                        mask=fn.optim.decay_weights_only))
    tokens = jnp.asarray(np.random.default_rng(0).integers(0, VOCAB, 200_000), jnp.int32)
    configs, runners, memory = [], {}, []
    for context, batch, layers, heads, width in plan["gpt_growth_shapes"]:
        shape = torch_gpt.Shape(VOCAB, context, batch, layers, heads, width)
        flops, attention = token_flops(shape)
        steps = int(np.clip(plan["gpt_growth_flops"] // (flops * batch * context),
                            plan["gpt_growth_min_steps"], 50))
        label = f"{layers} x {heads} x {width}, context {context}, batch {batch}"
        net = shakespeare_char.gpt(VOCAB, context, layers, heads, width)
        params = fn.model.init(jax.random.key(0), net)
        state = opt.init(params)
        key = jax.random.key(1)
        compiled, _, xla, rest = bench.clock.measure(
            lambda: steps_of(net, opt, steps, batch).lower(key, params, state, tokens).compile())
        ours = f"funcnn, {label}"
        runners[ours] = timed(lambda c=compiled, k=key, p=params, s=state: c(k, p, s, tokens))
        runners[ours]()                                          # warm up
        losses = np.asarray(runners[ours].last[2])
        if shape == RECIPE:
            bench.check("9b. GPT growth: funcnn's steps learn at the recipe's shape",
                        np.isfinite(losses).all() and losses[-1] < losses[0],
                        f"loss {losses[0]:.3f} -> {losses[-1]:.3f} over {steps} steps")
        if torch is not None:
            runners[f"PyTorch, {label}"] = torch_gpt.runner(torch, shape, steps, n_threads)
            runners[f"PyTorch, {label}"]()                       # warm up: AdamW's state
        configs.append(Config(label, shape, steps, flops, attention))
        memory.append(_memory(torch, net, params, shape, compiled, n_threads))
        print(f"  compiled {label} ({xla + rest:.1f} s), {steps} step(s) per call", flush=True)
    times = interleave(runners, plan["gpt_growth_repeats"], SETTLE_S)
    _time_table(bench, configs, times, n_threads)
    _memory_table(bench, configs, memory, n_threads)


def _time_table(bench, configs, times, n_threads):
    impls = ("funcnn", "PyTorch") if bench.torch is not None else ("funcnn",)
    recipe = next((c for c in configs if c.shape == RECIPE), configs[0])

    def per_gflop(impl, c):                   # seconds per GFLOP of the step's FLOPs
        return med(times[f"{impl}, {c.label}"]) / c.steps / (c.flops * c.tokens / 1e9)

    def causal(c):                            # the FLOPs with attention's causal half only
        return c.flops - c.attention / 2

    table, strays, halves = [], [], []
    for c in configs:
        ours = times[f"funcnn, {c.label}"]
        for impl in impls:
            secs = times[f"{impl}, {c.label}"]
            rel = per_gflop(impl, c) / per_gflop(impl, recipe)
            if not 1 / 1.5 <= rel <= 1.5:
                strays.append(f"{impl} at {c.label} ({rel:.2f}x)")
            per_step = [s / c.steps for s in secs]
            name = "funcnn" if impl == "funcnn" else f"PyTorch eager, {threads(n_threads)}"
            table.append([c.label, name, c.steps, fmt_s(per_step, 1e3, 1),
                          f"{med(per_step) / c.tokens * 1e6:.1f}",
                          f"{c.flops / 1e6:.2f} ({c.attention / c.flops:.0%})",
                          f"{c.flops * c.tokens / med(per_step) / 1e9:.1f}", f"{rel:.2f}x",
                          f"{pair_ratio(secs, ours):.2f}"])
            if impl == "PyTorch" or _by_blocks(c.shape):     # the causal half computed
                share = (causal(c) / c.flops) / (causal(recipe) / recipe.flops)
                halves.append(f"{impl} {rel / share:.2f}x at {c.label}")
    bench.section(
        "9b. How a GPT step's cost grows: context, then nanoGPT's GPU recipe",
        "Shapes as blocks x heads x width; N training steps per timed call (funcnn's "
        "`fn.train.fit_steps`, PyTorch eager's nanoGPT, the same AdamW and clipping), "
        f"float32; {bench.plan['gpt_growth_repeats']} repeat(s), interleaved. Time per GFLOP: "
        f"relative to the implementation's own at {recipe.label} (the CPU recipe); 1.00x means "
        "the time follows the FLOPs. The last column: the row's time over funcnn's at the same "
        "shape (> 1: funcnn faster).",
        ["shape", "implementation", "steps", "ms / step: median [min]", "us / token",
         "MFLOP / token (attention's share)", "GFLOP/s", "time per GFLOP", "its time / funcnn's"],
        table,
        [f"CPU: {cpu_info()}.",
         "FLOPs: the matrix products of a training step (forward, dL/dW, dL/dx), attention's "
         "S = q k^T and O = P v over the full t x t, as funcnn's plain formulation computes "
         "them; its formulation by blocks (chosen from context "
         f"{fn.layers.attention.BLOCKS_MIN_CONTEXT}) and PyTorch's causal kernel skip the blocks "
         "above the diagonal, so their attention does about half of that. Softmax, LayerNorm, "
         "GELU and AdamW are not counted.",
         "Off the FLOPs by more than 1.5x: " + (", ".join(strays) if strays else "none") + ".",
         *(["Time per GFLOP with attention counted over the causal half, where only that is "
            "computed: " + ", ".join(halves) + "."] if halves else [])])


def _by_blocks(shape) -> bool:
    """Whether funcnn's attention computes by blocks at this shape ("auto"'s rule)."""
    return fn.layers.CausalSelfAttention(shape.heads)._as(shape.context) == "blocks"


def _memory(torch, net, params, shape, compiled, n_threads):
    """(funcnn's caches, attention's P in them, XLA's temporaries, PyTorch's saved, PyTorch's
    peak), bytes (None where unknown)."""
    x = jax.ShapeDtypeStruct((shape.batch, shape.context), jnp.int32)
    kept = _cache_bytes(net, params, x)
    prob = 0 if _by_blocks(shape) else shape.layers * shape.batch * shape.heads * shape.context**2 * 4
    stats = compiled.memory_analysis()
    temp = getattr(stats, "temp_size_in_bytes", None) if stats is not None else None
    saved = peak = None
    if torch is not None:
        saved = torch_gpt.saved_bytes(torch, shape)
        try:
            peak = torch_gpt.peak_bytes(shape, n_threads)["peak"]
        except (RuntimeError, OSError) as e:
            print(f"  note: no PyTorch peak for {shape}: {e}", flush=True)
    return kept, prob, temp, saved, peak


def _cache_bytes(net, params, x) -> int:
    """Bytes of the distinct arrays funcnn's training forward keeps in its caches: an array
    two caches hold (a layer's output is the next one's input) counts once, the batch not at
    all (the jaxpr's outputs, by variable)."""
    closed = jax.make_jaxpr(lambda p, x: net.layer.apply(p, x, True, None)[1])(params, x)
    inputs = set(closed.jaxpr.invars)
    kept = {v for v in closed.jaxpr.outvars
            if not isinstance(v, Literal) and v not in inputs}
    return sum(v.aval.size * v.aval.dtype.itemsize for v in kept)


def _memory_table(bench, configs, memory, n_threads):
    def mib(b):
        return "n/a" if b is None else f"{b / MIB:,.0f}"
    table = [[c.label, *map(mib, sizes)] for c, sizes in zip(configs, memory, strict=True)]
    bench.section(
        "9c. What a GPT training step keeps in memory (MiB)",
        "Kept for the backward: funcnn's layer caches (the distinct arrays of `jax.make_jaxpr` "
        "of the training forward, the batch not counted), of which attention's P = softmax(S) "
        "is n x heads x t x t floats per block (none where attention computes by blocks: a "
        "log-sum-exp per row instead); PyTorch eager's saved tensors (a "
        "`saved_tensors_hooks` tally of one forward, each storage once, parameters and batch "
        "not counted; its attention keeps no P, only a log-sum-exp per row). XLA's "
        "temporaries: the peak of the buffers XLA assigns inside funcnn's compiled steps "
        "(`memory_analysis().temp_size_in_bytes`: caches, gradients and the step's other "
        "intermediates; params, optimizer state and the text come in as arguments and their "
        "successors go out as outputs, neither counted). PyTorch's peak: "
        "resident memory at the peak of a second step, over that before it, in a fresh "
        f"process ({threads(n_threads)}; gradients, saved tensors and temporaries).",
        ["shape", "funcnn: kept for the backward", "of it, attention's P",
         "funcnn: XLA's temporaries", "PyTorch: saved for the backward",
         "PyTorch: peak of a step (RSS)"],
        table)
