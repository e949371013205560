"""Section 4 of `benchmarks/run.py`: ensembles. 1, 16, 256 and 4,096 Clojure networks (2-8-2
sigmoid, MSE, 640 points, batch 16, 20 epochs) trained at once with `fit_many` (params from
`jax.vmap(init)`), on one device and split over one CPU device per core (`mesh=`), against
one network with `fit`, and against PyTorch's own ensemble recipe
(`rivals/torch_func.py`: `stack_module_state` + `vmap(grad(loss))` + `functional_call`), at
its best thread count; the second call is timed, the first one's compile time reported; and
how much of fit_many's time the per-epoch shuffles alone take.

    python benchmarks/run.py --only ensembles
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import funcnn as fn
from rivals import torch_func
from timing import SETTLE_S, fmt_s, interleave, med, pair_ratio, threads, timed


def ensembles(bench):
    plan, torch = bench.plan, bench.torch
    k_data, k_split, k_init, k_fit = jax.random.split(fn.rng.key(1337), 4)
    ds = fn.data.gaussian_clusters(k_data, n_per_class=400)
    train, test = fn.data.split(k_split, ds, train_fraction=0.8)
    net = fn.model.mlp([2, 8, 2], hidden=fn.math.sigmoid, output=fn.math.sigmoid,
                       loss=fn.losses.mse, init=fn.model.uniform(0.5))
    kw = dict(epochs=20, lr=0.5, batch_size=16, verbose=False)
    members, repeats = plan["members"], plan["member_repeats"]
    # members from plan["big_members"] on (4,096 networks: seconds a call, each) run in the
    # first big_member_repeats rounds only, fit_many and torch.func alike
    big_from, big_repeats = plan.get("big_members"), plan.get("big_member_repeats", repeats)
    big = [m for m in members if big_from is not None and m >= big_from]

    runners = {}
    for m in members:
        keys = jax.random.split(k_fit, m)
        params = jax.vmap(lambda k: fn.model.init(k, net))(jax.random.split(k_init, m))
        runners[m] = timed(partial(fn.train.fit_many, keys, net, params, train, test, **kw))
    runners["fit"] = timed(partial(fn.train.fit, k_fit, net, fn.model.init(k_init, net), train,
                                   test, **kw))
    # the same ensembles split by network over the CPU's devices (run.py makes one per core)
    devices = jax.device_count()
    mesh = jax.make_mesh((devices,), ("networks",)) if devices > 1 else None
    split = [m for m in members if mesh is not None and m % devices == 0]
    for m in split:
        keys = jax.random.split(k_fit, m)
        params = jax.vmap(lambda k: fn.model.init(k, net))(jax.random.split(k_init, m))
        runners[("mesh", m)] = timed(partial(fn.train.fit_many, keys, net, params, train, test,
                                             mesh=mesh, **kw))
    shuffles = {m: timed(partial(epoch_shuffles, jax.random.split(k_fit, m),
                                 n=train.x.shape[0], batch_size=kw["batch_size"],
                                 epochs=kw["epochs"]))
                for m in members}                             # the shuffles alone, per m
    first = {name: bench.clock.measure(run)[1:] for name, run in runners.items()}
    for run in shuffles.values():
        run()                                                 # compile

    # PyTorch: the same rows; its best thread count, measured at 16 networks (full plan)
    rival, best, probe_note = {}, 1, ""
    if torch is not None:
        tkw = dict(epochs=kw["epochs"], batch_size=kw["batch_size"], lr=kw["lr"])
        make = partial(torch_func.ensemble_runner, torch, train.x, train.y, **tkw)
        probe_m = 16 if 16 in members else members[-1]
        counts = bench.threads
        probes = {t: make(probe_m, threads=t) for t in counts}
        for run in probes.values():
            run()                                             # warm up PyTorch's dispatch
        if len(counts) > 1:
            probe = interleave(probes, 2, settle=SETTLE_S)
            best = min(counts, key=lambda t: med(probe[t]))
            probe_note = (f"torch.func's thread count, measured at {probe_m} networks (2 calls "
                          "each, interleaved): " + ", ".join(f"{fmt_s(probe[t], 1e3, 0)} ms "
                                                            f"at {threads(t)}" for t in counts)
                          + f"; the rows use {threads(best)}.")
        else:
            probe_note = f"torch.func runs at {threads(best)} (--quick measures no other count)."
        rival = {m: (probes[best] if m == probe_m else make(m, threads=best)) for m in members}
    settle = SETTLE_S if best > 1 else 0.0

    # rounds: every runner once per round, in a new shuffled order each round
    order = np.random.default_rng(0)
    times: dict = {}
    for r in range(repeats):
        this = {}
        for m in members:
            if m not in big or r < big_repeats:
                this[m] = runners[m]
                this[("shuffles", m)] = shuffles[m]
                if m in split:
                    this[("mesh", m)] = runners[("mesh", m)]
            if m in rival and (m not in big or r < big_repeats):
                this[("torch", m)] = rival[m]
        this["fit"] = runners["fit"]
        names = list(this)
        got = interleave({names[i]: this[names[i]] for i in order.permutation(len(names))}, 1,
                         settle=settle)
        for name, t in got.items():
            times.setdefault(name, []).extend(t)
    shuffle_ms = {m: med(times.pop(("shuffles", m))) * 1e3 for m in members}
    rival_t = {m: times.pop(("torch", m)) for m in members if ("torch", m) in times}
    one = times[members[0]]

    rows, ratio = [], {}
    for name in [*(x for m in members for x in (m, ("mesh", m)) if x in times), "fit"]:
        t = times[name]
        m = name[1] if isinstance(name, tuple) else name
        accuracy = np.asarray(runners[name].last[1]["test_accuracy"])[..., -1].mean()
        label = ("fit, one network" if name == "fit" else
                 f"{m} network{'s' * (m > 1)}" + (f", over {devices} devices" if m != name
                                                  else ""))
        bench.check(f"4. {label if name == 'fit' else 'fit_many, ' + label} learns",
                    accuracy > 0.8, f"mean test accuracy {accuracy:.3f}")
        row = [label, fmt_s(t, 1e3, 1), f"{pair_ratio(t, one[:len(t)]):.2f}",
               f"{med(t) * 1e3 / (1 if name == 'fit' else m):.3f}"]
        if m in rival_t:
            rt = rival_t[m]
            ratio[name] = pair_ratio(rt, t[:len(rt)])
            rival_acc = torch_func.accuracy(torch, rival[m], test.x, test.y)
            if name == m:                               # (the mesh row shares its rival)
                bench.check(f"4. torch.func ensemble, {label} learns", rival_acc > 0.8,
                            f"mean test accuracy {rival_acc:.3f}")
            row += [fmt_s(rt, 1e3, 1) if len(rt) > 1 else f"{rt[0] * 1e3:.1f} (1 call)",
                    f"{med(rt) * 1e3 / m:.3f}", f"{ratio[name]:.2f}x", f"{rival_acc:.3f}"]
        else:
            row += ["-"] * 4
        row += [f"{first[name][1]:.2f}", f"{first[name][2]:.2f}", f"{accuracy:.3f}"]
        rows.append(row)

    notes = ["Of fit_many's time, the per-epoch shuffles alone (every network's own order of "
             "its rows, drawn together as one sorting network over all of them, "
             "`data.shuffles`; "
             f"{kw['epochs']} epochs, timed in the same rounds; one device): " +
             ", ".join(f"{shuffle_ms[m]:.1f} ms for {m}" for m in members) +
             ". The rest grows with m too: every step's gather and matmuls are batched over "
             "the networks" + (", and for 2 x 8 weights XLA's CPU backend runs them at a few "
                               "GFLOP/s, each kernel on one core: on one device the other cores "
                               "idle (the same time pinned to one core with taskset, "
                               "2026-12-05). Hence the rows over several devices: "
                               "`fit_many(..., mesh=jax.make_mesh((cores,), ('networks',)))` "
                               "after `jax.config.update('jax_num_cpu_devices', cores)`, as "
                               "run.py does; each device trains its share of the networks."
                               if jax.default_backend() == "cpu" else
                               f" (on {jax.devices()[0].device_kind}).")]
    if torch is None:
        notes.append("torch is not installed: the torch.func columns are empty "
                     "(pip install -e .[bench]).")
    else:
        notes += [probe_note,
                  "torch.func: PyTorch's ensemble recipe (`rivals/torch_func.py`): "
                  "`stack_module_state` of m `nn.Sequential` copies, one "
                  "`vmap(grad(loss))` over `functional_call` per batch and an in-place SGD "
                  "update, each network with its own uniform(-0.5, 0.5) init and its own "
                  "shuffle every epoch (`argsort(rand(m, 640))`), on the same 640 rows."]
        if big:
            notes.append(", ".join(map(str, big)) + " networks: timed in the first "
                         f"{big_repeats} rounds only (seconds a call), fit_many and torch.func "
                         "alike; their ratios are those rounds'.")
    bench.section(
        "4. Ensembles: Clojure networks trained at once (2-8-2 sigmoid, MSE, 640 points, "
        "batch 16, 20 epochs)",
        "`fit_many(jax.random.split(key, m), net, jax.vmap(init)(keys), ...)`, the second "
        f"call timed, against PyTorch's `torch.func` ensemble; {repeats} rounds, "
        "interleaved; ratio = median of the per-round ratios torch.func / fit_many.",
        ["networks", "fit_many ms: median [min]", f"time vs {members[0]} network",
         "fit_many ms per network", "torch.func ms: median [min]",
         "torch.func ms per network", "torch.func / fit_many", "torch.func test accuracy",
         "XLA compile s", "trace + lower s", "fit_many test accuracy"],
        rows, notes)
    if ("mesh", 256) in ratio:
        bench.headline(f"256 networks: fit_many over {devices} {jax.default_backend().upper()} "
                       "devices vs torch.func ensemble", f"{ratio[('mesh', 256)]:.1f}x faster",
                       ">= 8x", ratio[("mesh", 256)] >= 8)
    if 256 in ratio:
        bench.headline("256 networks: fit_many on one device vs torch.func ensemble",
                       f"{ratio[256]:.1f}x faster", *((">= 8x", ratio[256] >= 8)
                                                      if ("mesh", 256) not in ratio else ()))
    r = pair_ratio(times[members[-1]], one[:len(times[members[-1]])])
    bench.headline(f"{members[-1]} networks at once vs one (fit_many; informational)",
                   f"{r:.1f}x the time")


@partial(jax.jit, static_argnames=("n", "batch_size", "epochs"))
def epoch_shuffles(keys, *, n, batch_size, epochs):
    """fit_many's shuffles and nothing else: every network's order at once (`data.shuffles`)
    cut into batches, every epoch."""
    def epoch(total, i):
        orders = fn.data.shuffles(jax.vmap(lambda k: jax.random.fold_in(k, i))(keys), n)
        rows, _ = jax.vmap(lambda o: fn.data.batches(None, n, batch_size, order=o))(orders)
        return total + rows.sum(), None
    return lax.scan(epoch, jnp.int32(0), jnp.arange(epochs))[0]
