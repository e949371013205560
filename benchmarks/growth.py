"""Section 2 of `benchmarks/run.py`: how the cost grows. 2a, `growth`: hidden width x batch
size of the Fashion-MNIST MLP (784-width-10), funcnn `fit` against PyTorch eager, a fixed
amount of work per timed call; 2b, `dataset_size`: funcnn `fit` alone over data sets of
different sizes (time per epoch, and compile time, which must not grow).

    python benchmarks/run.py --only growth --only dataset_size
"""
from __future__ import annotations

import jax
import numpy as np

import funcnn as fn
from fashion import mlp_flops, relu_net, rows
from rivals import torch_loop
from timing import SETTLE_S, fmt_s, interleave, med, pair_ratio, threads, timed


def growth(bench):
    plan, torch, table = bench.plan, bench.torch, []
    lo, hi = plan["growth_steps"]
    for width in plan["widths"]:
        net = relu_net(width)
        params = fn.model.init(jax.random.key(0), net)
        for bs in plan["batches"]:
            step_flops = mlp_flops(net.sizes, bs)
            steps = int(min(hi, plan["n_train"] // bs, max(lo, plan["growth_flops"]
                                                            // step_flops)))
            train = rows(bench.fashion[0], steps * bs)
            runners = {"funcnn": timed(lambda: fn.train.fit(
                jax.random.key(1), net, params, train, epochs=1, lr=0.1, batch_size=bs,
                verbose=False))}
            steps_of = {"funcnn": steps}
            if torch is not None:
                x, labels = torch_loop.tensors(torch, train)
            for t in bench.threads if torch is not None else ():
                name = f"PyTorch, {threads(t)}"
                steps_of[name] = steps if t == 1 else min(steps, 10)
                m = steps_of[name] * bs
                runners[name] = torch_loop.epoch_runner(torch, net, params, x[:m], labels[:m],
                                                        batch_size=bs, threads=t, lr=0.1)
            first = {name: bench.clock.measure(run)[1:] for name, run in runners.items()}
            times = interleave(runners, plan["growth_repeats"], SETTLE_S)
            per_step = {name: [s / steps_of[name] for s in t] for name, t in times.items()}
            loss = float(runners["funcnn"].last[1]["train_loss"][-1])
            if not np.isfinite(loss) or loss > 2.5:
                bench.check(f"2. funcnn width {width} batch {bs} learns", False,
                            f"train loss {loss}")
            for name, t in per_step.items():
                table.append([name, width, bs, steps_of[name], fmt_s(t, 1e3, 3),
                              f"{bs / med(t):,.0f}", f"{step_flops / med(t) / 1e9:.1f}",
                              f"{pair_ratio(t, per_step['funcnn']):.2f}",
                              "{:.2f} + {:.2f}".format(*first[name][1:])
                              if name == "funcnn" else ""])
    bench.section(
        "2a. Cost growth: hidden width x batch size (784-width-10, one fit epoch over "
        "steps x batch rows)",
        f"About {plan['growth_flops'] / 1e9:g} GFLOP per timed call ({lo} to {hi} steps; the "
        "many-thread PyTorch rows at most 10). "
        f"{plan['growth_repeats']} repeats, interleaved.",
        ["implementation", "width", "batch", "steps", "ms / step: median [min]",
         "samples/s", "GFLOP/s", "time vs funcnn", "funcnn compile s (XLA + trace/lower)"],
        table)


def dataset_size(bench):
    plan = bench.plan
    net = relu_net()
    params = fn.model.init(jax.random.key(0), net)
    runners, first = {}, {}
    for n in plan["sizes"]:
        runners[n] = timed(lambda train=rows(bench.fashion[0], n): fn.train.fit(
            jax.random.key(1), net, params, train, epochs=1, lr=0.1, batch_size=128,
            verbose=False))
        jax.clear_caches()                                    # so this size compiles afresh
        first[n] = bench.clock.measure(runners[n])[1:]
    times = interleave(runners, max(3, plan["repeats"]))
    small, big = plan["sizes"][0], plan["sizes"][-1]
    table = [[f"{n:,}", fmt_s(t), f"{n / med(t):,.0f}", f"{n / small:.0f}",
              f"{med(t) / med(times[small]):.2f}", f"{first[n][1]:.2f}",
              f"{first[n][2]:.2f}"] for n, t in times.items()]
    bench.section(
        "2b. Cost growth: data-set size (funcnn fit, 784-128-10, batch 128, one epoch)",
        "Each size compiled afresh (`jax.clear_caches()` first), then timed. "
        f"{max(3, plan['repeats'])} repeats, interleaved.",
        ["rows", "s / epoch: median [min]", "samples/s", "rows vs smallest",
         "time vs smallest", "XLA compile s", "trace + lower s"], table)
    r = first[big][1] / max(first[small][1], 1e-9)
    bench.headline(f"fit's XLA compile time, {big:,} rows vs {small:,}", f"{r:.2f}x",
                   "does not grow", r < 1.5)
    r = med(times[big]) / med(times[small]) / (big / small)
    bench.headline(f"fit's time per row, {big:,} rows vs {small:,}", f"{r:.2f}x",
                   "linear (~1x)", 0.67 < r < 1.5)
