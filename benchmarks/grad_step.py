"""Hand-written backprop against jax.grad: the time of one SGD step.

    python benchmarks/grad_step.py            # 7 repeats, K = 1000 (Clojure net) / 200 (784 net)
    python benchmarks/grad_step.py --quick    # smoke test: a few steps, 2 repeats (seconds)

Two variants of the same step, p <- p - lr dL/dp, returning the loss before it:
  hand  `funcnn.model.grad_step`: the VJPs written in funcnn (loss.vjp, act.vjp, dense_vjp);
  auto  `jax.value_and_grad(funcnn.model.loss, argnums=1)`, then `funcnn.model.sgd`.
Two networks: the Clojure net (2 -> 8 -> 2 sigmoid, MSE, batch 16 of gaussian_clusters) and a
784 -> 128 -> 10 net (relu, logits, softmax cross-entropy, batch 128 of random inputs).

Measured, in one process, the four programs in a new shuffled order every repeat
(`timing.interleave`; the machine is shared and noisy, so the median and the min over the
repeats are printed):
  scan  K steps inside one jitted `lax.scan`, seconds per step: the step's own cost;
  call  one jitted step called from Python many times in a row, seconds per call: dispatch
        included (the Python loop of a training script that jits only its step).
Before any timing both variants run the K steps from the same params and must agree (allclose),
so the two columns time the same computation. `flops` and `bytes` are XLA's cost analysis of
one compiled step.
"""
from __future__ import annotations

import argparse
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import funcnn as fn
from funcnn.data import Dataset
from timing import interleave, med, ratios, timed

N_BATCHES = 8          # distinct batches in the stack; step i uses batch i % N_BATCHES
TARGET = 1.05          # hand may take at most 5% longer than autodiff


# --- the two variants of one step: (net, params, batch, lr) -> (params, loss) ---------------

def hand_step(net, params, batch, lr):
    return fn.model.grad_step(net, params, batch, lr)


def auto_step(net, params, batch, lr):
    loss, g = jax.value_and_grad(fn.model.loss, argnums=1)(net, params, batch)
    return fn.model.sgd(params, g, lr), loss


VARIANTS = {"hand": hand_step, "auto": auto_step}


def scan_program(step, net, k):
    """A jitted function running `k` steps: (params, batches, lr) -> (params, losses: f32[k])."""
    def run(params, batches, lr):
        def body(params, i):
            batch = jax.tree.map(lambda v: v[i % N_BATCHES], batches)   # f32[batch_size, d]
            return step(net, params, batch, lr)
        return lax.scan(body, params, jnp.arange(k))
    return jax.jit(run)


def call_program(step, net):
    """One jitted step: (params, batch, lr) -> (params, loss)."""
    return jax.jit(lambda params, batch, lr: step(net, params, batch, lr))


# --- the two networks and their data ----------------------------------------------------------

def clojure_net(key):
    k_data, k_rows, k_init = jax.random.split(key, 3)
    net = fn.model.mlp([2, 8, 2], hidden=fn.math.sigmoid, output=fn.math.sigmoid,
                       loss=fn.losses.mse, init=fn.model.uniform(0.5))
    ds = fn.data.gaussian_clusters(k_data)                                 # 800 points
    rows = jax.random.randint(k_rows, (N_BATCHES, 16), 0, ds.x.shape[0])   # i32[8, 16]
    return net, fn.model.init(k_init, net), Dataset(ds.x[rows], ds.y[rows]), 0.5


def wide_net(key):
    k_x, k_y, k_init = jax.random.split(key, 3)
    net = fn.model.mlp([784, 128, 10], hidden=fn.math.relu, output=fn.math.identity,
                       loss=fn.losses.softmax_cross_entropy, init=fn.model.he())
    x = jax.random.uniform(k_x, (N_BATCHES, 128, 784), jnp.float32)       # in [0, 1)
    labels = jax.random.randint(k_y, (N_BATCHES * 128,), 0, 10)           # i32[8 * 128]
    y = fn.data.one_hot(labels, 10).reshape(N_BATCHES, 128, 10)            # f32[8, 128, 10]
    # lr 0.01: at 0.05, float32 rounding puts some relu unit on different sides of 0 in the
    # two variants within 200 steps, and from there their params part (no bug, chaos)
    return net, fn.model.init(k_init, net), Dataset(x, y), 0.01


# --- timing -----------------------------------------------------------------------------------

def call_loop(step, params, batch, lr, calls):
    """`calls` dispatches of a one-step program, each feeding the next (as a training loop)."""
    for _ in range(calls):
        params, loss = step(params, batch, lr)
    return params, loss


def cost(step, *args):
    """XLA's estimate for one compiled step: (flops, bytes accessed)."""
    analysis = step.lower(*args).compile().cost_analysis()
    analysis = analysis[0] if isinstance(analysis, list) else analysis   # older jax: a list
    return analysis.get("flops", float("nan")), analysis.get("bytes accessed", float("nan"))


def bench(name, make, k, calls, repeats, key):
    """Check, then time, both variants on one network; return one table row per variant."""
    net, params, batches, lr = make(key)
    lr = jnp.float32(lr)
    first = jax.tree.map(lambda v: v[0], batches)
    scans = {v: scan_program(step, net, k) for v, step in VARIANTS.items()}
    steps = {v: call_program(step, net) for v, step in VARIANTS.items()}

    # the same computation? K steps from the same params (this also compiles both programs)
    out = {v: scans[v](params, batches, lr) for v in VARIANTS}
    for a, b in zip(jax.tree.leaves(out["hand"]), jax.tree.leaves(out["auto"]), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5,
                                   err_msg=f"{name}: hand and auto differ after {k} steps")
    for v in VARIANTS:
        jax.block_until_ready(steps[v](params, first, lr))                 # compile, warm up

    # time: every program once per repeat, in a new shuffled order each repeat
    runners = {}
    for v in VARIANTS:
        runners[v, "scan"] = timed(partial(scans[v], params, batches, lr))
        runners[v, "call"] = timed(partial(call_loop, steps[v], params, first, lr, calls))
    times = interleave(runners, repeats)
    rows = []
    for v in VARIANTS:
        flops, nbytes = cost(steps[v], params, first, lr)
        rows.append((name, v, [t / k for t in times[v, "scan"]],
                     [t / calls for t in times[v, "call"]], flops, nbytes))
    return rows


def print_table(rows):
    head = (f"{'net':<16}{'variant':<8}{'scan median':>13}{'scan min':>11}{'call median':>13}"
            f"{'call min':>11}{'flops':>10}{'bytes':>10}")
    print(head + "\n" + "-" * len(head))
    for net, v, scan, call, flops, nbytes in rows:
        print(f"{net:<16}{v:<8}{med(scan) * 1e6:>10.2f} us"
              f"{min(scan) * 1e6:>8.2f} us{med(call) * 1e6:>10.1f} us"
              f"{min(call) * 1e6:>8.1f} us{flops:>10.3g}{nbytes:>10.3g}")
    print(f"\nhand / auto: median of the per-repeat ratios (their range) [ratio of the mins]; "
          f"target <= {TARGET}")
    for hand, auto in zip(rows[::2], rows[1::2], strict=True):
        line = f"  {hand[0]:<16}"
        for what, i in (("scan", 2), ("call", 3)):
            r = ratios(hand[i], auto[i])
            line += (f"{what} {med(r):.3f} ({min(r):.2f}-{max(r):.2f}) "
                     f"[{min(hand[i]) / min(auto[i]):.3f}]   ")
        ok = med(ratios(hand[2], auto[2])) <= TARGET
        print(line + ("ok" if ok else "above target: rerun with --repeats 31 to tell it "
                                      "from noise"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few steps, 2 repeats (CI smoke)")
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats (default 7)")
    args = parser.parse_args()
    repeats = 2 if args.quick else args.repeats
    # (name, network, K scan steps, calls timed one by one)
    plan = [("2-8-2 sigmoid", clojure_net, 20 if args.quick else 1000, 10 if args.quick else 1000),
            ("784-128-10 relu", wide_net, 5 if args.quick else 200, 5 if args.quick else 200)]
    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}; {repeats} repeats; "
          "times per step")
    keys = jax.random.split(jax.random.key(0), len(plan))
    rows = []
    for (name, make, k, calls), key in zip(plan, keys, strict=True):
        rows += bench(name, make, k, calls, repeats, key)
    print_table(rows)


if __name__ == "__main__":
    main()
