"""Section 9 of `benchmarks/run.py` [gpt]: a training step of the character-level GPT at
nanoGPT's CPU recipe (4 blocks x 4 heads, 128 wide, context 64, batch 12; clip 1.0, AdamW),
in tokens per second: funcnn's hand-written backward pass against `jax.grad` of funcnn's own
forward (the same scan, the same optimizer), PyTorch eager (nanoGPT's model with
`F.scaled_dot_product_attention`, `rivals/torch_gpt.py`, at each thread count) and
`torch.compile` of it.

    python benchmarks/run.py --only gpt
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import funcnn as fn
from funcnn.examples import shakespeare_char
from rivals import torch_gpt
from timing import SETTLE_S, fmt_s, interleave, med, pair_ratio, threads, timed

VOCAB, CONTEXT, BATCH, LAYERS, HEADS, WIDTH = 65, 64, 12, 4, 4, 128
SHAPE = torch_gpt.Shape(VOCAB, CONTEXT, BATCH, LAYERS, HEADS, WIDTH)


def gpt(bench):
    plan, torch = bench.plan, bench.torch
    steps, repeats = plan["gpt_steps"], plan["gpt_repeats"]
    net = shakespeare_char.gpt(VOCAB, CONTEXT, LAYERS, HEADS, WIDTH)
    opt = fn.optim.chain(fn.optim.clip_by_global_norm(1.0),
                         fn.optim.adamw(1e-3, b1=0.9, b2=0.99, weight_decay=0.1,
                                        mask=fn.optim.decay_weights_only))
    params = fn.model.init(jax.random.key(0), net)
    state = opt.init(params)
    tokens = jnp.asarray(np.random.default_rng(0).integers(0, VOCAB, 200_000), jnp.int32)
    key, ours = jax.random.key(1), steps_of(net, opt, steps, BATCH)
    runners = {
        "funcnn (VJPs by hand)": timed(lambda: ours(key, params, state, tokens)),
        "jax.grad of funcnn's forward": timed(lambda: _autodiff_steps(
            key, params, state, tokens, net=net, opt=opt, steps=steps)),
    }
    if torch is not None:
        for t in bench.threads:
            runners[f"PyTorch eager, {threads(t)}"] = torch_gpt.runner(torch, SHAPE, steps, t)
        runners["torch.compile, 1 thread"] = torch_gpt.runner(torch, SHAPE, steps, 1,
                                                                compiled=True)
    first = {name: bench.clock.measure(run)[1:] for name, run in runners.items()}
    times = interleave(runners, repeats, SETTLE_S)
    ours = times["funcnn (VJPs by hand)"]
    losses = np.asarray(runners["funcnn (VJPs by hand)"].last[2])
    bench.check("9. GPT: funcnn's steps learn", losses[-1] < losses[0],
                f"loss {losses[0]:.3f} -> {losses[-1]:.3f} over {steps} steps")
    theirs = np.asarray(runners["jax.grad of funcnn's forward"].last[2])
    bench.check("9. GPT: jax.grad's steps take the same batches, the same losses",
                np.allclose(theirs, losses, rtol=1e-4),
                f"largest difference {np.abs(theirs - losses).max():.1e} over {steps} steps")
    rows = []
    for name, t in times.items():
        rows.append([name, fmt_s([s / steps for s in t], 1e3, 2),
                     f"{steps * BATCH * CONTEXT / med(t):,.0f}",
                     f"{pair_ratio(t, ours):.2f}",
                     "" if "torch" in name.lower() else f"{first[name][1] + first[name][2]:.1f}"])
    bench.section(
        "9. A GPT training step (nanoGPT's CPU recipe: 4 x 4 heads, 128 wide, context 64, "
        "batch 12)",
        f"{steps} steps per timed call, {repeats} repeats, interleaved; tokens per second of "
        "training; the ratio is the row's time over funcnn's (> 1: funcnn faster).",
        ["implementation", "ms per step", "tokens/s", "its time / funcnn's",
         "XLA compile s"],
        rows)
    for rival, target in (("PyTorch eager", 1.2), ("jax.grad of funcnn's forward", 1.3)):
        best = min((n for n in times if n.startswith(rival)), key=lambda n: med(times[n]))
        ratio = pair_ratio(times[best], ours)
        bench.headline(f"GPT step, funcnn vs {best}", f"{ratio:.2f}x", f">= {target}x",
                       ratio >= target)


def steps_of(net, opt, steps, batch):
    """`fn.train.fit_steps`'s compiled loop (`steps` steps, each on `batch` random windows of
    the text, the hand VJPs, `opt`) as a jitted function of (key, params, state, tokens), to
    lower and compile ahead of the timing (the public fit_steps checks its arguments first)."""
    return jax.jit(partial(fn.train._fit_steps, lr=np.float32(0.0), clock=fn.history.clock(),
                           net=net, steps=steps, batch_size=batch, optimizer=opt,
                           every=0, total_steps=steps))


@partial(jax.jit, static_argnames=("net", "opt", "steps"))
def _autodiff_steps(key, params, state, tokens, *, net, opt, steps):
    """fit_steps's steps (step i's windows from fold_in(key, i)), the gradient by jax.grad of
    the loss."""
    def step(carry, i):
        params, state = carry
        x, y = fn.data.windows(jax.random.fold_in(key, i), tokens, BATCH, CONTEXT)
        loss, g = jax.value_and_grad(
            lambda p: net.loss.fn(net.layer.apply(p, x, False, None)[0], y, None))(params)
        updates, state = opt.update(g, state, params)
        return (fn.optim.apply_updates(params, updates), state), loss
    (params, state), losses = lax.scan(step, (params, state), jnp.arange(steps))
    return params, state, losses
