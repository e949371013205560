"""Section 4 of `benchmarks/run.py`: ensembles. 1, 16 and 256 Clojure networks (2-8-2
sigmoid, MSE, 640 points, batch 16, 20 epochs) trained at once with `fit_many` (params from
`jax.vmap(init)`), against one network with `fit`; the second call is timed, the first one's
compile time reported; and how much of it the per-epoch shuffles alone take.

    python benchmarks/run.py --only ensembles
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import funcnn as fn
from timing import CORES, fmt_s, interleave, med, pair_ratio, timed


def ensembles(bench):
    plan = bench.plan
    k_data, k_split, k_init, k_fit = jax.random.split(fn.rng.key(1337), 4)
    ds = fn.data.gaussian_clusters(k_data, n_per_class=400)
    train, test = fn.data.split(k_split, ds, train_fraction=0.8)
    net = fn.model.mlp([2, 8, 2], hidden=fn.math.sigmoid, output=fn.math.sigmoid,
                       loss=fn.losses.mse, init=fn.model.uniform(0.5))
    kw = dict(epochs=20, lr=0.5, batch_size=16, verbose=False)
    runners = {}
    for m in plan["members"]:
        keys = jax.random.split(k_fit, m)
        params = jax.vmap(lambda k: fn.model.init(k, net))(jax.random.split(k_init, m))
        runners[m] = timed(partial(fn.train.fit_many, keys, net, params, train, test, **kw))
    runners["fit"] = timed(partial(fn.train.fit, k_fit, net, fn.model.init(k_init, net), train,
                                   test, **kw))
    shuffles = {m: timed(partial(epoch_shuffles, jax.random.split(k_fit, m),
                                 n=train.x.shape[0], batch_size=kw["batch_size"],
                                 epochs=kw["epochs"]))
                for m in plan["members"]}                     # the shuffles alone, per m
    first = {name: bench.clock.measure(run)[1:] for name, run in runners.items()}
    for run in shuffles.values():
        run()                                                 # compile
    times = interleave({**runners, **{("shuffles", m): r for m, r in shuffles.items()}},
                       plan["member_repeats"])
    shuffle_ms = {m: med(times.pop(("shuffles", m))) * 1e3 for m in plan["members"]}
    one = times[plan["members"][0]]
    rows = []
    for name, t in times.items():
        accuracy = np.asarray(runners[name].last[1]["test_accuracy"])[..., -1].mean()
        label = "fit, one network" if name == "fit" else f"fit_many, {name} networks"
        bench.check(f"4. {label} learns", accuracy > 0.8, f"mean test accuracy {accuracy:.3f}")
        rows.append([label, fmt_s(t, 1e3, 1), f"{pair_ratio(t, one):.2f}",
                     f"{med(t) * 1e3 / (1 if name == 'fit' else name):.3f}",
                     f"{first[name][1]:.2f}", f"{first[name][2]:.2f}", f"{accuracy:.3f}"])
    bench.section(
        "4. Ensembles: Clojure networks trained at once (2-8-2 sigmoid, MSE, 640 points, "
        "batch 16, 20 epochs)",
        "`fit_many(jax.random.split(key, m), net, jax.vmap(init)(keys), ...)`, the second "
        f"call timed; {plan['member_repeats']} repeats, interleaved.",
        ["run", "ms: median [min]", f"time vs {plan['members'][0]} network",
         "ms per network", "XLA compile s", "trace + lower s", "mean test accuracy"],
        rows,
        ["Of that, the per-epoch shuffles alone (each network's own sort of its rows, "
         f"{kw['epochs']} epochs, timed in the same repeats): " +
         ", ".join(f"{shuffle_ms[m]:.1f} ms for {m}" for m in plan["members"]) +
         ". The rest grows with m too: every step's gather and matmuls are batched over "
         "the networks" + (", and for 2 x 8 weights XLA's CPU backend runs them at a few "
                           f"GFLOP/s; on {CORES} cores there is no idle width for the extra "
                           "networks to fill, as there would be on a GPU."
                           if jax.default_backend() == "cpu" else
                           f" (on {jax.devices()[0].device_kind}).")])
    big = plan["members"][-1]
    r = pair_ratio(times[big], one)
    bench.headline(f"{big} networks at once vs one (fit_many)", f"{r:.1f}x", "< 3x", r < 3)


@partial(jax.jit, static_argnames=("n", "batch_size", "epochs"))
def epoch_shuffles(keys, *, n, batch_size, epochs):
    """fit_many's shuffles and nothing else: each network's `data.batches`, every epoch."""
    def epoch(total, i):
        rows, _ = jax.vmap(lambda k: fn.data.batches(jax.random.fold_in(k, i), n,
                                                     batch_size))(keys)
        return total + rows.sum(), None
    return lax.scan(epoch, jnp.int32(0), jnp.arange(epochs))[0]
