"""Section 5 of `benchmarks/run.py`: seed 2 as written. Full batch (50,000 images), L2 0.001,
SGD lr 0.01, with the validation loss every epoch, from the seed's own initial params: funcnn
`fit` against the NumPy original (float64 at 1 thread and every core, and float32), which runs
in the worker process of `rivals/numpy_loop.py`.

    python benchmarks/run.py --only seed_full_batch
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import funcnn as fn
from fashion import relu_net, rows
from rivals.numpy_loop import blas_line, seed_init
from timing import CORES, SETTLE_S, fmt_s, interleave, med, pair_ratio, threads, timed


def seed_full_batch(bench):
    plan = bench.plan
    n, n_val, epochs = plan["seed_rows"], plan["seed_val"], plan["seed_epochs"]
    train, val = rows(bench.fashion[0], n), rows(bench.fashion[0], n_val, start=50_000)
    w1, b1, w2, b2 = seed_init()                              # the seed's params, [out, in]
    params = tuple({"w": jnp.asarray(w.T, jnp.float32), "b": jnp.asarray(b, jnp.float32)}
                   for w, b in ((w1, b1), (w2, b2)))
    net = relu_net(init=fn.model.lecun())
    opt = fn.optim.weight_decay(fn.optim.sgd(0.01), 0.001)
    runners = {"funcnn fit": timed(lambda: fn.train.fit(
        jax.random.key(1), net, params, train, val, epochs=epochs, batch_size=n, optimizer=opt,
        verbose=False))}
    seed = "NumPy float64 (the seed as written)"
    variants = (("float64", 1 if bench.quick else CORES), ("float64", 1), ("float32", 1))
    for dtype, t in dict.fromkeys(variants):                  # (quick: 1 thread only)
        label = seed if dtype == "float64" else f"NumPy {dtype}"
        runners[f"{label}, {threads(t)}"] = bench.worker.runner(
            "seed", dtype=dtype, n_train=n, n_val=n_val, epochs=epochs, threads=t)
    first = {name: bench.clock.measure(run)[1:] for name, run in runners.items()}
    times = interleave(runners, plan["seed_repeats"], SETTLE_S)
    losses = {name: np.asarray(run.last[1]["train_loss"] if name == "funcnn fit"
                               else run.last["train_loss"]) for name, run in runners.items()}
    reference = losses[next(k for k in runners if k.startswith(seed))]
    base = times["funcnn fit"]
    table = []
    for name, t in times.items():
        bench.check(f"5. {name} learns", losses[name][-1] < losses[name][0],
                    f"train loss {losses[name][0]:.4f} -> {losses[name][-1]:.4f} in "
                    f"{epochs} epochs")
        table.append([name, fmt_s(t, 1 / epochs), f"{n * epochs / med(t):,.0f}",
                      f"{pair_ratio(t, base):.2f}", f"{losses[name][-1]:.5f}",
                      f"{np.abs(losses[name] - reference).max():.1e}"])
    bench.section(
        "5. Seed 2's recipe: full batch, L2 0.001, SGD lr 0.01 (seconds per epoch)",
        f"{n:,} training rows in one batch, and the validation loss on {n_val:,} rows every "
        f"epoch, as the seed computes it; {epochs} epochs per timed call (the seed runs 50: "
        "every epoch is the same work), all from the seed's own initial params "
        f"(RandomState(0)). {plan['seed_repeats']} repeats, interleaved.",
        ["implementation", "s / epoch: median [min]", "samples/s", "time vs funcnn",
         f"train loss at epoch {epochs}", "largest loss gap to the seed"],
        table, [f"NumPy: {blas_line(bench.blas)}.",
                "funcnn computes in float32, the seed in float64: the loss gap is rounding.",
                "funcnn's first call, compiling included: {:.2f} s (XLA {:.2f} s).".format(
                    *first["funcnn fit"][:2])])
    for name in times:
        if name.startswith(seed):
            r = pair_ratio(times[name], base)
            bench.headline(f"funcnn fit vs {name}, full batch", f"{r:.2f}x")
