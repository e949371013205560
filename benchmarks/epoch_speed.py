"""Section 1 of `benchmarks/run.py`: one epoch of Fashion-MNIST, 784 -> 128 (ReLU) -> 10,
softmax cross-entropy, SGD lr 0.1, batch 128, a new shuffle every epoch, float32, from the same
initial params: seconds per epoch for funcnn `fit` (also called inside `jax.jit`, which skips
its per-call checks) against the same model trained with `jax.grad` in a `lax.scan` (the
autodiff reference, fit's data handling), PyTorch eager (a plain randperm-and-slice loop) and a
seed-2 style NumPy loop (backprop by hand, mini-batches), these two with 1 thread and with every
core. Then 1b, `roofline`: the float32 matmul rate at the step's matmul shapes and at a large
square one, interleaved with fit epochs (it needs `epoch_speed` in the same run).

    python benchmarks/run.py --only epoch_speed --only roofline
"""
from __future__ import annotations

import os
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

import funcnn as fn
from fashion import CHANCE, mlp_flops, relu_net, rows
from rivals import torch_loop
from rivals.autodiff import autodiff_fit
from rivals.numpy_loop import blas_line
from timing import (CORES, SETTLE_S, fmt_ratio, fmt_s, interleave, matmul_timer, med,
                    pair_ratio, threads, timed)


def epoch_speed(bench):
    plan, torch = bench.plan, bench.torch
    n, bs, lr = plan["n_train"], 128, 0.1
    n_many = n // 10                       # rows for the many-thread rows (see below)
    train, test = rows(bench.fashion[0], n), rows(bench.fashion[1], plan["n_test"])
    net = relu_net()
    params = fn.model.init(jax.random.key(0), net)
    k_fit = jax.random.key(1)
    fit_in_jit = jax.jit(lambda key, params, x, y: fn.train.fit(
        key, net, params, fn.data.Dataset(x, y), epochs=1, lr=lr, batch_size=bs, verbose=False))
    runners = {
        "funcnn fit": timed(lambda: fn.train.fit(k_fit, net, params, train, epochs=1, lr=lr,
                                                 batch_size=bs, verbose=False)),
        # the same compiled loop, without fit's per-call checks in plain Python (which see
        # only tracers there)
        "funcnn fit inside jax.jit": timed(lambda: fit_in_jit(k_fit, params, train.x, train.y)),
        "jax.grad in lax.scan": timed(lambda: autodiff_fit(k_fit, params, train, np.float32(lr),
                                                           net=net, epochs=1, batch_size=bs))}
    rows_of = {}                           # rows per timed call, where not n
    if torch is not None:
        x, labels = torch_loop.tensors(torch, train)
    with tempfile.TemporaryDirectory() as tmp:
        params_path = os.path.join(tmp, "params.npz")
        np.savez(params_path, w1=params[0]["w"], b1=params[0]["b"], w2=params[1]["w"],
                 b2=params[1]["b"])
        for t in bench.threads:
            m = n if t == 1 else n_many
            if torch is not None:
                runners[f"PyTorch eager, {threads(t)}"] = torch_loop.epoch_runner(
                    torch, net, params, x[:m], labels[:m], batch_size=bs, threads=t, lr=lr)
                rows_of[f"PyTorch eager, {threads(t)}"] = m
            runners[f"NumPy loop, {threads(t)}"] = bench.worker.runner(
                "minibatch", params_path=params_path, n_train=m, n_test=plan["n_test"],
                epochs=1, batch_size=bs, lr=lr, seed=0, threads=t)
            rows_of[f"NumPy loop, {threads(t)}"] = m
        first = {name: bench.clock.measure(run)[1:] for name, run in runners.items()}
        times = interleave(runners, plan["repeats"], SETTLE_S)
    # per epoch of n rows (the many-thread rows ran n / 10 of them)
    epoch = {name: [s * n / rows_of.get(name, n) for s in t] for name, t in times.items()}

    # did each learn? and does funcnn compute what jax.grad computes?
    accuracy = {name: test_accuracy(bench, name, run, net, test)
                for name, run in runners.items()}
    for name, a in accuracy.items():
        bench.check(f"1. {name} learns", a > 0.5, f"test accuracy {a:.3f} after "
                    f"{rows_of.get(name, n):,} rows (chance {CHANCE})")
    losses = [float(runners[k].last[1]["train_loss"][-1])
              for k in ("funcnn fit", "jax.grad in lax.scan")]
    gap = abs(losses[0] - losses[1])
    bench.check("1. funcnn and jax.grad train alike", gap < 1e-3 * losses[0],
                f"epoch train losses {losses[0]:.5f} and {losses[1]:.5f} (same shuffles)")

    flops = mlp_flops(net.sizes, n)
    base = epoch["funcnn fit"]
    table = []
    for name, t in epoch.items():
        wall, xla, rest = first[name]
        table.append([name, fmt_s(t), f"{n / med(t):,.0f}", f"{flops / med(t) / 1e9:.1f}",
                      f"{pair_ratio(t, base):.2f}",
                      f"{wall:.2f} ({xla:.2f} + {rest:.2f})" if xla else f"{wall:.2f}",
                      f"{accuracy[name]:.3f}"])
    bench.s1 = dict(epoch=base, n=n, bs=bs, runner=runners["funcnn fit"])   # for roofline
    notes = [f"GFLOP/s: the step's matmul flops ({mlp_flops(net.sizes):,} per sample: "
             "forward, x^T g, and g W^T for all but the first layer) over the median time.",
             "funcnn fit's time includes its per-call input checks in Python (shapes, "
             "types, and a NumPy pass for NaN/Inf and one-hot rows: about 11 ms at 60,000 "
             "rows, on every call); the autodiff reference has none.",
             "Every funcnn row and the autodiff reference shuffle with fn.data.shuffle "
             "(a Feistel network past 1,024 rows: 0.6 ms at 60,000, where a sort took "
             "17 ms); PyTorch uses torch.randperm, NumPy Generator.permutation.",
             "The PyTorch loop accumulates the loss and the correct count per batch, as "
             "fit does. NumPy: " + blas_line(bench.blas) + "."]
    if len(bench.threads) > 1:
        notes.append(f"The {CORES}-thread rows ran {n_many:,} rows per timed call (their "
                     "s / epoch is scaled up): on this shared machine a thread team waits "
                     "for its slowest member, and a whole epoch could take minutes.")
    bench.section(
        f"1. Fashion-MNIST 784-128-10, batch {bs}: one epoch",
        f"{n:,} training rows, one epoch per timed call ({-(-n // bs)} steps of SGD, lr "
        f"{lr}, a new shuffle), every call from the same He-initialised params. "
        f"{plan['repeats']} repeats, interleaved. Test accuracy on {plan['n_test']:,} "
        "test images after the call.",
        ["implementation", "s / epoch: median [min]", "samples/s", "GFLOP/s",
         "time vs funcnn", "first call s (XLA compile + trace/lower)", "test accuracy"],
        table, notes)
    for rival, target in (("PyTorch eager", 2.0), ("jax.grad", 1.0), ("NumPy loop", None)):
        names = [k for k in epoch if k.startswith(rival)]
        if names:
            best = min(names, key=lambda k: med(epoch[k]))
            r = pair_ratio(epoch[best], base)
            bench.headline(f"funcnn fit vs {best}{' (its fastest)' if len(names) > 1 else ''}"
                           ", epoch throughput", fmt_ratio(epoch[best], base),
                           target and f">= {target:.1f}x", target and r >= target)
    loop = epoch["funcnn fit inside jax.jit"]
    bench.headline("funcnn's compiled loop (fit inside jax.jit: no per-call checks) vs "
                   "jax.grad in lax.scan", fmt_ratio(epoch["jax.grad in lax.scan"], loop),
                   ">= 1.0x", pair_ratio(epoch["jax.grad in lax.scan"], loop) >= 1.0)


def test_accuracy(bench, name, run, net, test) -> float:
    """The test accuracy of what `run` trained: a PyTorch model, the NumPy worker's own
    answer, or funcnn's (params, history)."""
    if name.startswith("PyTorch"):
        x, _ = torch_loop.tensors(bench.torch, test)
        out = torch_loop.forward(bench.torch, run.last, x, bench.threads[-1])
    elif name.startswith("NumPy"):
        return run.last["test_accuracy"]
    else:
        out = fn.model.forward(net, run.last[0], test.x)
    return float(fn.metrics.accuracy(jnp.asarray(out), test.y))


# --- 1b, the roofline ----------------------------------------------------------------------------

def roofline(bench):
    if bench.s1 is None:
        raise RuntimeError("roofline times fit's epochs against the matmuls under the same "
                           "load: run it with epoch_speed (--only epoch_speed --only roofline)")
    plan, bs, sizes = bench.plan, bench.s1["bs"], (784, 128, 10)
    s = plan["square"]
    square = f"[{s},{s}] x [{s},{s}]"
    shapes = step_matmuls(sizes, bs)[:1 if bench.quick else None]   # quick: compile less
    shapes += [(square, s, s, s, False, False)]
    runners = {label: matmul_timer(m, k, n, lhs_t, rhs_t,
                                   1 if label == square else plan["roof_steps"])
               for label, m, k, n, lhs_t, rhs_t in shapes}
    for run in runners.values():
        run()                                                 # compile
    runners["funcnn fit"] = bench.s1["runner"]                # again, under the same load
    times = interleave(runners, max(3, plan["repeats"]))
    flops = {label: 2 * m * k * n for label, m, k, n, *_ in shapes}
    table = [[label, f"{flops[label] / 1e6:,.1f}", fmt_s(times[label], 1e6, 1),
              f"{flops[label] / med(times[label]) / 1e9:.1f}",
              f"{flops[label] / min(times[label]) / 1e9:.1f}"] for label, *_ in shapes]
    # per repeat: the step's matmuls alone (at that repeat's rates) vs funcnn's step
    steps = -(-bench.s1["n"] // bs)
    step_s = [t / steps for t in times["funcnn fit"]]
    bound = [sum(times[label][r] for label, *_ in shapes[:-1]) for r in range(len(step_s))]
    share = med([b / t for b, t in zip(bound, step_s, strict=True)])
    achieved = [mlp_flops(sizes, bs) / t for t in step_s]
    of_square = med([a * t / flops[square] for a, t in zip(achieved, times[square],
                                                            strict=True)])
    bench.section(
        "1b. The float32 matmul roofline of this machine (jnp.dot on XLA's CPU backend)",
        f"Each matmul of the batch-{bs} step (x^T g reads its left side transposed, as "
        f"the backward pass does) {plan['roof_steps']} times in a jitted fori_loop over 4 "
        "distinct left sides (each product copies its left side in, as the step gathers "
        "its batch), and one large square product; interleaved with funcnn fit "
        f"epochs, so that each repeat compares the two under the same load. "
        f"{max(3, plan['repeats'])} repeats.",
        ["matmul", "MFLOP", "us each: median [min]", "GFLOP/s median", "GFLOP/s best"],
        table,
        [f"funcnn fit: {med(step_s) * 1e3:.3f} ms per step (median; best "
         f"{min(step_s) * 1e3:.3f}), {med(achieved) / 1e9:.1f} GFLOP/s of matmul work "
         f"(best {max(achieved) / 1e9:.1f}). The step's matmuls alone take "
         f"{med(bound) * 1e3:.3f} ms: funcnn runs at {share:.0%} of the roofline at these "
         f"shapes (median over repeats of matmuls-alone / step time), and at "
         f"{of_square:.0%} of the large square product's rate."])
    bench.headline("funcnn's share of the float32 matmul roofline: at the step's own shapes; "
                   "of a large square product", f"{share:.0%}; {of_square:.0%}")


def step_matmuls(sizes, bs):
    """The matmuls of one training step as (label, m, k, n, lhs stored transposed, rhs stored
    transposed): x W per layer, x^T g per layer, g W^T for every layer but the first."""
    out = []
    for i, (d_in, d_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        out.append((f"x W: [{bs},{d_in}] x [{d_in},{d_out}]", bs, d_in, d_out, False, False))
        out.append((f"x^T g: [{d_in},{bs}] x [{bs},{d_out}]", d_in, bs, d_out, True, False))
        if i:
            out.append((f"g W^T: [{bs},{d_out}] x [{d_out},{d_in}]", bs, d_out, d_in, False,
                        True))
    return out
