"""Section 6 of `benchmarks/run.py`: the GPU, where jax sees one (`pip install ".[cuda12]"`).
The same `fit`, unchanged, at batch 128 and 1024 (seconds per epoch), its share of a large
square matmul's rate on the GPU, and its losses and params against the CPU's from the same key.
Without a GPU the section says so; `--quick` then runs it with the CPU standing in, to check
the code path.

    python benchmarks/run.py --only gpu
"""
from __future__ import annotations

from functools import partial

import jax
import numpy as np

import funcnn as fn
from fashion import CHANCE, mlp_flops, relu_net, rows
from timing import fmt_s, interleave, matmul_timer, med, timed


def gpu(bench):
    plan = bench.plan
    gpus = [d for d in jax.devices() if d.platform == "gpu"]   # the default backend's
    cpu = jax.devices("cpu")[0]
    if not gpus and not bench.quick:
        bench.section("6. GPU", "No GPU on this machine (jax's devices: "
                      f"{', '.join(sorted({d.platform for d in jax.devices()}))}): nothing "
                      "measured. Where there is one, `pip install \".[cuda12]\"` (or "
                      "cuda13), then `python benchmarks/run.py` fills this section "
                      "(`--only gpu` prints it alone).",
                      [], [])
        bench.headline("GPU: fit epoch at batch 128 and 1024, share of the GPU's matmul "
                       "rate, losses vs the CPU's", "no GPU on this machine")
        return
    device = gpus[0] if gpus else cpu      # --quick without a GPU: the CPU stands in
    stand_in = "" if gpus else " (no GPU here: the CPU stands in, to check the code path)"
    n, lr = plan["n_train"], 0.1
    net = relu_net()
    on = lambda tree: jax.device_put(tree, device)
    train, test = on(rows(bench.fashion[0], n)), on(rows(bench.fashion[1], plan["n_test"]))
    params, key = on(fn.model.init(jax.random.key(0), net)), on(jax.random.key(1))
    runners = {bs: timed(partial(fn.train.fit, key, net, params, train, epochs=1, lr=lr,
                                 batch_size=bs, verbose=False))
               for bs in plan["gpu_batches"]}
    first = {bs: bench.clock.measure(run)[1:] for bs, run in runners.items()}
    s = plan["gpu_square"]
    runners["square"] = matmul_timer(s, s, s, False, False, plan["gpu_square_steps"],
                                     device)
    runners["square"]()                                       # compile
    times = interleave(runners, plan["repeats"])
    square_rate = 2 * s ** 3 / med(times["square"])
    table = []
    for bs in plan["gpu_batches"]:
        rate = mlp_flops(net.sizes, n) / med(times[bs])
        out = fn.model.forward(net, runners[bs].last[0], test.x)
        accuracy = float(fn.metrics.accuracy(out, test.y))
        bench.check(f"6. fit on {device.platform} learns at batch {bs}", accuracy > 0.5,
                    f"test accuracy {accuracy:.3f} after {n:,} rows (chance {CHANCE})")
        wall, xla, rest = first[bs]
        table.append([bs, fmt_s(times[bs]), f"{n / med(times[bs]):,.0f}",
                      f"{rate / 1e9:,.1f}", f"{rate / square_rate:.1%}",
                      f"{wall:.2f} ({xla:.2f} + {rest:.2f})", f"{accuracy:.3f}"])
    # the same epoch on the CPU and on the device, from the same key, in full float32
    with jax.default_matmul_precision("float32"):
        results = [fn.train.fit(jax.device_put(key, d), net, jax.device_put(params, d),
                                jax.device_put(train, d), jax.device_put(test, d),
                                epochs=1, lr=lr, batch_size=128, verbose=False)
                   for d in (cpu, device)]
    (p_cpu, h_cpu), (p_dev, h_dev) = jax.tree.map(np.asarray, results)
    rel = lambda a, b: float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))
    loss_gap = max(rel(h_dev[k], h_cpu[k]) for k in ("train_loss", "test_loss"))
    param_gap = max(rel(a, b) for a, b in zip(jax.tree.leaves(p_dev),
                                              jax.tree.leaves(p_cpu), strict=True))
    bench.check(f"6. {device.platform} and cpu losses agree", loss_gap < 1e-3,
                f"largest relative gap {loss_gap:.1e} (train and test loss after one "
                f"epoch; params {param_gap:.1e}); float32 tolerance 1e-3")
    bench.section(
        f"6. GPU: {device.device_kind}{stand_in}",
        f"The same `fit` with its data and params on {device} (jax.device_put; no other "
        f"change), one epoch of {n:,} rows per timed call, {plan['repeats']} repeats, "
        f"interleaved with a [{s},{s}] x [{s},{s}] float32 product at the default matmul "
        "precision (which XLA may run in TF32 on this GPU).",
        ["batch", "s / epoch: median [min]", "samples/s", "GFLOP/s", "share of the square "
         "product's rate", "first call s (XLA compile + trace/lower)", "test accuracy"],
        table,
        [f"The square product: {square_rate / 1e12:.2f} TFLOP/s (median).",
         f"cpu vs {device.platform}, one epoch at batch 128 from the same key with "
         f"jax.default_matmul_precision('float32'): train and test loss within "
         f"{loss_gap:.1e} (relative), params within {param_gap:.1e}.",
         f"Sections 1 to 5 ran on jax's default device ({jax.devices()[0]}): on a GPU "
         "machine, section 4's ensembles are the GPU's (against PyTorch and NumPy on the "
         "CPU in sections 1, 2 and 5)."])
    if gpus:
        bench.headline("GPU: fit epoch at batch " + " / ".join(map(str, plan["gpu_batches"])),
                       " / ".join(f"{med(times[bs]):.3f} s" for bs in plan["gpu_batches"]))
        bench.headline("GPU: losses vs the CPU's (relative)", f"{loss_gap:.1e}", "< 1e-3",
                       loss_gap < 1e-3)
