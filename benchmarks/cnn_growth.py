"""Section 7c of `benchmarks/run.py`: how a CNN training step's cost grows, and what a step
keeps in memory (issue "Hand-written gradients that beat autodiff").

    python benchmarks/run.py --only cnn_growth          # the grid (a couple of minutes)

The small CNN's shape (conv 3x3 c1, relu, pool 2, conv 3x3 c2, relu, pool 2, dense 128 relu,
dense 10) with channels (c1, c2) = 16/32, 32/64, 64/128, at batch 32, 128 and 512, on the
28x28 images and on 56x56 ones (each pixel repeated 2x2). funcnn `fit` only, N steps of SGD
per call; the cost per sample is set beside the FLOPs per sample, and the time per GFLOP
beside that of the issue's network (16/32, 28x28, batch 128): where it strays by more than
1.5x the time does not follow the FLOPs.
Then memory at batch 512, the issue's two networks: what the forward keeps for the backward
(funcnn: the layers' caches; PyTorch: the tensors autograd saves, each storage once) and XLA's
peak of temporary buffers in funcnn's whole step (its buffer assignment, from
`compiled.memory_analysis()`), beside the largest patch matrix.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import funcnn as fn
from cnn import NETS, step_flops
from fashion import rows
from rivals import torch_loop
from timing import cpu_info, fmt_s, interleave, med, timed

L, M = fn.layers, fn.math
LR = 0.01


def scaled_cnn(c1, c2, side):
    """The small CNN with c1, c2 channels on side x side images."""
    return fn.model.network(
        L.serial(L.Reshape((side, side, 1)), L.Conv2D(c1, 3), M.relu, L.MaxPool2D(2),
                 L.Conv2D(c2, 3), M.relu, L.MaxPool2D(2), L.Flatten(),
                 L.Dense(128, M.relu), L.Dense(10)),
        input_shape=(side * side,), loss=fn.losses.softmax_cross_entropy)


def upscaled(ds, factor):
    """Images [n, 28 * 28] -> [n, (28 factor)^2], each pixel repeated factor x factor."""
    if factor == 1:
        return ds
    x = np.asarray(ds.x).reshape(-1, 28, 28).repeat(factor, 1).repeat(factor, 2)
    return fn.data.Dataset(jnp.asarray(x.reshape(len(x), -1)), ds.y)


def cnn_growth(bench):
    plan = bench.plan
    train_all = bench.fashion[0]
    key = jax.random.key(1)
    configs, runners = [], {}
    for side in plan["growth_sides"]:
        for c1, c2 in plan["growth_channels"]:
            net = scaled_cnn(c1, c2, side)
            params = fn.model.init(jax.random.key(0), net)
            per_sample = step_flops(net)[1]
            for bs in plan["growth_batches"]:
                steps = int(np.clip(plan["growth_cnn_flops"] // (per_sample * bs), 2, 20))
                train = upscaled(rows(train_all, steps * bs), side // 28)
                label = f"{c1}/{c2}, {side}x{side}, batch {bs}"
                runners[label] = timed(lambda net=net, params=params, train=train, bs=bs:
                                       fn.train.fit(key, net, params, train, None, epochs=1,
                                                    lr=LR, batch_size=bs, verbose=False))
                runners[label]()                             # compile, warm up
                configs.append((label, per_sample, bs, steps))
                print(f"  compiled {label}", flush=True)
    times = interleave(runners, plan["growth_cnn_repeats"])
    ref = "16/32, 28x28, batch 128"
    per_gflop = {label: med(times[label]) / steps / (flops * bs / 1e9)
                 for label, flops, bs, steps in configs}
    base = per_gflop.get(ref, next(iter(per_gflop.values())))
    table, strays = [], []
    for label, flops, bs, steps in configs:
        t = [s / steps for s in times[label]]
        rel = per_gflop[label] / base
        if not 1 / 1.5 <= rel <= 1.5:
            strays.append(f"{label} ({rel:.2f}x)")
        table.append([label, steps, fmt_s(t, 1e3, 2), f"{med(t) / bs * 1e6:,.0f}",
                      f"{flops / 1e6:.1f}", f"{flops * bs / med(t) / 1e9:.1f}", f"{rel:.2f}x"])
    bench.section(
        "7c. How a CNN step's cost grows: channels x input size x batch (funcnn fit)",
        "The small CNN's shape with channels c1/c2, on 28x28 images and on 56x56 ones (each "
        "pixel repeated 2x2); N steps of SGD per call, float32; "
        f"{plan['growth_cnn_repeats']} repeat(s), interleaved. Time per GFLOP: relative to "
        f"{ref} (the issue's network); 1.00x means the time follows the FLOPs.",
        ["config", "steps", "ms / step: median [min]", "us / sample", "MFLOP / sample",
         "GFLOP/s", "time per GFLOP"],
        table,
        [f"CPU: {cpu_info()}.",
         "FLOPs: the convolutions' and dense layers' (forward, dL/dW, dL/dx but the first "
         "layer's), as in section 7.",
         "Off the FLOPs by more than 1.5x: " + (", ".join(strays) if strays else "none") + "."])
    memory(bench)


def memory(bench):
    """What a step at batch 512 keeps for its backward, funcnn against PyTorch."""
    torch = bench.torch
    bs = 512
    table = []
    for name, make in NETS.items():
        net = make()
        params = fn.model.init(jax.random.key(0), net)
        batch = rows(bench.fashion[0], bs)
        key = jax.random.key(2)
        _, caches = jax.eval_shape(lambda p, x: net.layer.apply(p, x, True, key), params,
                                   batch.x)
        kept = sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(caches))
        step = jax.jit(lambda p, b: fn.model.grad_step(net, p, b, LR, key=key))
        stats = step.lower(params, batch).compile().memory_analysis()
        temp = getattr(stats, "temp_size_in_bytes", None) if stats is not None else None
        largest = max(_patch_bytes(net, bs))
        theirs = "torch not installed"
        if torch is not None:
            theirs = f"{_torch_saved(torch, net, params, batch) / 2**20:,.0f}"
        table.append([name, f"{kept / 2**20:,.0f}", theirs,
                      "n/a" if temp is None else f"{temp / 2**20:,.0f}",
                      f"{largest / 2**20:,.0f}"])
    bench.section(
        "7d. What a CNN training step at batch 512 keeps in memory (MiB)",
        "Kept for the backward: funcnn's layer caches (from `jax.eval_shape` of the forward); "
        "PyTorch eager's saved tensors (a `saved_tensors_hooks` tally, each storage once). "
        "XLA's temporaries: the peak of the buffers XLA assigns inside one funcnn step "
        "(`memory_analysis().temp_size_in_bytes`: caches, patch matrices and gradients, "
        "reused where their lives do not overlap). A patch matrix is kh kw = 9x its input.",
        ["network", "funcnn: kept for the backward", "PyTorch: saved for the backward",
         "funcnn: XLA's temporaries, whole step", "largest patch matrix"],
        table)


def _patch_bytes(net, bs):
    shapes = [net.input_shape] + net.layer.shapes(net.input_shape)[:-1]
    for layer, shape in zip(net.layer.layers, shapes, strict=True):
        if isinstance(layer, L.Conv2D):
            oh, ow, _ = layer.shape(shape)
            yield 4 * bs * oh * ow * layer.kernel[0] * layer.kernel[1] * shape[2]
    yield 0


def _torch_saved(torch, net, params, batch):
    """Bytes of the distinct storages autograd saves in one training forward of `batch`."""
    copy, _ = torch_loop.model(torch, net, params)
    copy.train()
    x, labels = torch_loop.tensors(torch, batch)
    saved, loss = torch_loop.saved_bytes(
        torch, lambda: torch.nn.functional.cross_entropy(copy(x), labels), (x,))
    loss.backward()
    return saved                                             # the batch itself: not kept
