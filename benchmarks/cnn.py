"""Section 7 of `benchmarks/run.py`: CNNs on Fashion-MNIST, hand-written gradients against
autodiff and PyTorch (issue "Hand-written gradients that beat autodiff").

    python benchmarks/run.py --only cnn            # the full plan (a few minutes)
    python benchmarks/run.py --quick --only cnn    # the learning checks (well under a minute)

Two networks: the small CNN (conv 16, relu, pool, conv 32, relu, pool, dense 128 relu,
dense 10) at batch 128 (the full plan also 32 and 512), and the `fashion-cnn` example's
network (conv 32, pool, conv 64, BatchNorm, pool, Dropout 0.5, dense 128, dense 10) at batch
128. Each timed call runs the same N steps of SGD (lr 0.01, float32) on the same batches
(fit's shuffle of the first N * batch training rows) from the same initial params:
- funcnn fit: one epoch of `fit` over those rows (the hand-written VJPs);
- funcnn fit, every Conv2D as patches: where Conv2D's 'auto' chose Winograd's F(2x2, 3x3)
  for a layer (a 3x3 stride-1 kernel on >= 32 channels: fashion-cnn's second convolution),
  the same network with the patch product everywhere (what 'auto' bought);
- funcnn fit, each step whole: where fit runs a step in pieces of rows (`fn.pieces.in_pieces`:
  a network without BatchNorm whose batch needs over PIECE_FLOATS floats of workspace, the
  small CNN), the same network with each step in one piece (what the pieces bought);
- jax.grad of funcnn's forward, the autodiff referee (`rivals/autodiff.py`):
  `net.layer.apply(train=True)` and the loss under `jax.value_and_grad`, in a jitted
  `lax.scan` with fit's batches, dropout masks and pieces (so its losses must match fit's);
- lax.conv + jax.grad, what a JAX user writes (`rivals/lax_cnn.py`): `lax.conv_general_dilated`
  (NHWC, HWIO), `lax.reduce_window` max pool, `jax.grad`; (a) a jitted step called from Python
  once per batch, (b) the same step in a jitted `lax.scan`;
- PyTorch eager (`rivals/torch_loop.py`), NCHW, the same weights (HWIO -> OIHW, dense w -> w.T,
  the first dense's rows reordered from NHWC's flatten order to NCHW's), at 1 thread and at
  every core;
- torch.compile of that model (full plan, batch 128, 1 thread).
Then the 10,000 test images through `fn.model.forward` and through PyTorch's `no_grad` forward.
The learning checks run every implementation's final params through one probe: funcnn's
training-mode loss on the first 512 of the trained rows (a fixed dropout mask).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

import funcnn as fn
from fashion import rows
from funcnn.examples import fashion_cnn
from rivals import torch_loop
from rivals.autodiff import autodiff_fit
from rivals.lax_cnn import UserCNN, from_user, to_user, user_forward, user_jit_step, user_scan
from timing import (CORES, SETTLE_S, cpu_info, fmt_ratio, fmt_s, interleave, matmul_timer, med,
                    pair_ratio, threads, timed)

L, M = fn.layers, fn.math
LR = 0.01
FIT, REF = "funcnn fit", "jax.grad of funcnn's forward, scan"   # the rows checked alike
FIT_PATCHES = "funcnn fit, every Conv2D as patches"   # where 'auto' picked Winograd somewhere
FIT_WHOLE = "funcnn fit, each step whole"    # where fit runs a big step in pieces
PROBE_ROWS = 512


def small_cnn():
    """The issue's small CNN: two conv blocks (16, 32 channels), no BatchNorm, no dropout."""
    return fn.model.network(
        L.serial(L.Reshape((28, 28, 1)), L.Conv2D(16, (3, 3), padding="SAME"), M.relu,
                 L.MaxPool2D((2, 2)), L.Conv2D(32, (3, 3), padding="SAME"), M.relu,
                 L.MaxPool2D((2, 2)), L.Flatten(), L.Dense(128, M.relu), L.Dense(10)),
        input_shape=(784,), loss=fn.losses.softmax_cross_entropy)


NETS = {"small CNN": small_cnn, "fashion-cnn": fashion_cnn.cnn}


def step_flops(net) -> tuple[int, int]:
    """(forward, training step) flops per sample of the convolutions and dense layers:
    2 oh ow kh kw c_in c_out per conv, 2 d_in d_out per dense. A training step adds as many
    again for dL/dW of every layer, and for dL/dx of every layer but the first (the data
    need none): 3x the forward, less the first layer's."""
    shapes = [net.input_shape] + net.layer.shapes(net.input_shape)[:-1]
    forward = []
    for layer, shape in zip(net.layer.layers, shapes, strict=True):
        if isinstance(layer, L.Conv2D):
            oh, ow, c_out = layer.shape(shape)
            forward.append(2 * oh * ow * layer.kernel[0] * layer.kernel[1] * shape[2] * c_out)
        elif isinstance(layer, L.Dense):
            forward.append(2 * shape[0] * layer.n)
    return sum(forward), 3 * sum(forward) - forward[0]


# --- what every row is checked with ------------------------------------------------------------

@partial(jax.jit, static_argnames="net")
def probe_loss(net, params, probe, key):
    """The training-mode loss on `probe` (BatchNorm's batch statistics, dropout from `key`):
    one number that falls as any implementation learns, whatever its running statistics."""
    out, _ = net.layer.apply(params, probe.x, True, key)
    return net.loss.fn(out, probe.y, jnp.ones(probe.x.shape[0], out.dtype))


def epoch_rows(net, key, n, batch_size):
    """fit's batches for one epoch from `key`: i32[steps, batch_size] (the other
    implementations train on the same rows in the same order)."""
    key = fn.train.epoch_keys(key, 1)[0]
    if net.layer.needs_key:                                   # fit splits off the masks' key
        key = jax.random.split(key)[0]
    return np.asarray(fn.data.batches(key, n, batch_size)[0])


# --- the section -----------------------------------------------------------------------------

@dataclass
class Setting:
    """What every configuration shares: the keys, the probe, the pause."""
    settle: float                  # seconds before each call (multi-thread rivals spin)
    probe: fn.data.Dataset         # the first PROBE_ROWS training rows
    compile_problem: str | None    # why torch.compile is not timed, or None
    key_init: jax.Array = field(default_factory=lambda: jax.random.key(0))
    key_fit: jax.Array = field(default_factory=lambda: jax.random.key(1))   # fit's shuffle
    key_probe: jax.Array = field(default_factory=lambda: jax.random.key(2))  # probe's mask


def formulations(net) -> list[str]:
    """How each of the network's Conv2D layers computes on this backend ('auto'): 'patches'
    (im2col), 'winograd' or 'conv' (XLA's convolution)."""
    shapes = [net.input_shape] + net.layer.shapes(net.input_shape)[:-1]
    return [layer._as(shape[2]) for layer, shape in zip(net.layer.layers, shapes)
            if isinstance(layer, L.Conv2D)]


class _Whole(L.Serial):
    """A serial that does not say its rows are independent, so fit runs each step whole."""
    independent_rows = False


def whole_steps(net):
    """The same network, its training steps never split into pieces (pieces.step_pieces)."""
    return replace(net, layer=_Whole(net.layer.layers))


def as_patches(net):
    """The same network with every Conv2D computing as the patch product (the row that shows
    what 'auto' choosing Winograd bought)."""
    def conv(layer):
        if not isinstance(layer, L.Conv2D):
            return layer
        moved = copy.copy(layer)
        object.__setattr__(moved, "formulation", "patches")
        return moved
    return replace(net, layer=replace(net.layer, layers=tuple(map(conv, net.layer.layers))))


def cnn(bench):
    """Time a training step of the two CNNs every way above, then evaluation; add the checks,
    the two tables and the headlines to `bench`."""
    plan, torch = bench.plan, bench.torch
    train, test = bench.fashion
    if torch is None:
        problem = "torch is not installed"
    elif not plan["cnn_compile"]:
        problem = "not tried in --quick: compiling takes tens of seconds"
    else:
        problem = torch_loop.compile_works()
    setting = Setting(SETTLE_S if len(bench.threads) > 1 else 0.0, rows(train, PROBE_ROWS),
                      problem)
    table, notes, results, evals = [], [], {}, []
    for name, bs in [("small CNN", bs) for bs in plan["cnn_batches"]] + [("fashion-cnn", 128)]:
        net = NETS[name]()
        params = fn.model.init(setting.key_init, net)
        per_step, config_rows, note = train_config(bench, setting, name, net, params, bs, train)
        table += config_rows
        notes.append(note)
        results[(name, bs)] = per_step
        if bs == 128:                                      # evaluation: once per network
            evals.append(evaluate(bench, setting, name, net, params, test))
    notes[:0] = [f"CPU: {cpu_info()}; XLA used all {CORES} cores (its default), PyTorch "
                 f"{' and '.join(map(str, bench.threads))} thread(s). funcnn's Conv2D ran as "
                 f"{', '.join(f'{n}: ' + ' and '.join(formulations(NETS[n]())) for n in NETS)} "
                 f"(its formulation 'auto' on {jax.default_backend()}).",
                 "torch.compile: " + (
                     "`torch.compile(model)` (forward and backward through Inductor; the SGD "
                     "step eager), at 1 thread and batch 128 only; its first call compiled "
                     "with Inductor's caches off" if setting.compile_problem is None
                     else f"not timed ({setting.compile_problem})") + "."]
    if torch is None:
        notes.append("torch is not installed: the PyTorch rows are skipped "
                     "(pip install -e .[bench]).")
    _report(bench, plan, table, evals, results, notes)


def train_config(bench, setting, name, net, params, bs, train_all):
    """One network at one batch size: every implementation's N steps, interleaved with a
    large square matmul; the learning checks. Returns (ms per step by row, table rows, note)."""
    plan = bench.plan
    flops = step_flops(net)[1] * bs
    # enough steps that a call is mostly steps: the first steps after a pause run colder
    steps = int(min(plan["cnn_steps"], max(plan["cnn_min_steps"], plan["cnn_flops"] // flops)))
    train = rows(train_all, steps * bs)
    order = epoch_rows(net, setting.key_fit, steps * bs, bs)   # fit's batches, for all
    runners, finals = jax_runners(setting, net, params, train, order, bs)
    if bench.torch is not None:
        compiled = setting.compile_problem is None and bs == 128
        more = torch_runners(bench.torch, net, params, train, order, bench.threads, compiled)
        runners.update(more[0])
        finals.update(more[1])
    first = {}
    for label, runner in list(runners.items()):            # compile, warm up
        try:
            first[label] = bench.clock.measure(runner)[1]
        except Exception as e:                              # torch.compile's only
            if not label.startswith("torch.compile"):
                raise
            setting.compile_problem = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
            del runners[label], finals[label]
    square = plan["square"]
    runners["square matmul"] = matmul_timer(square, square, square, False, False, 1)
    runners["square matmul"]()                              # compile
    times = interleave(runners, plan["cnn_repeats"], setting.settle)
    square_rate = 2 * square ** 3 / med(times.pop("square matmul"))
    per_step = {label: [t / steps for t in ts] for label, ts in times.items()}

    # did each learn? One probe for all: funcnn's loss of each row's final params
    loss = lambda p: float(probe_loss(net, p, setting.probe, setting.key_probe))
    before = loss(params)
    after = {label: loss(finals[label](runners[label].last)) for label in per_step}
    for label, value in after.items():
        bench.check(f"7. {name} b{bs}: {label} learns", value < before,
                    f"probe loss {before:.4f} -> {value:.4f} after {steps} steps")
    for other, what in ((REF, "jax.grad of its forward"), (FIT_PATCHES, "its patch product"),
                        (FIT_WHOLE, "its steps whole")):
        if other not in runners:
            continue
        means = [float(runners[label].last[1]["train_loss"][-1]) for label in (FIT, other)]
        bench.check(f"7. {name} b{bs}: funcnn and {what} train alike",
                    abs(after[FIT] - after[other]) < 1e-3 * after[FIT],
                    f"probe losses {after[FIT]:.6f} and {after[other]:.6f} after {steps} "
                    "steps; mean training losses {:.6f} and {:.6f}".format(*means))
    table = []
    for label, t in per_step.items():
        rate = flops / med(t)
        table.append([label, f"{name}, {bs}", steps, fmt_s(t, 1e3, 2),
                      fmt_ratio(t, per_step[FIT]), f"{rate / 1e9:.1f}",
                      f"{rate / square_rate:.0%}", f"{first[label]:.1f}", f"{after[label]:.4f}"])
    note = (f"{name}, batch {bs}: {flops / bs / 1e6:.2f} MFLOP per sample per step, "
            f"{flops / 1e9:.2f} GFLOP per step; the [{square}]^2 matmul ran at "
            f"{square_rate / 1e9:.0f} GFLOP/s (median) in the same repeats; probe loss "
            f"{before:.4f} at the initial params.")
    return per_step, table, note


def jax_runners(setting, net, params, train, order, bs):
    """The JAX rows' runners, and how to read funcnn-layout params from each one's result."""
    key, lr = setting.key_fit, np.float32(LR)
    user = UserCNN.of(net)

    def user_loop(p=to_user(user, params)):                 # (a): a loop in Python
        for i in range(len(order)):
            p, loss = user_jit_step(user, p, train.x, train.y, order[i], key, i, lr)
        return p, loss

    runners = {
        FIT: timed(lambda: fn.train.fit(key, net, params, train, None, epochs=1, lr=LR,
                                        batch_size=bs, verbose=False)),
        REF: timed(lambda: autodiff_fit(key, params, train, lr, net=net, epochs=1,
                                        batch_size=bs)),
        "lax.conv + jax.grad, jitted step": timed(user_loop),
        "lax.conv + jax.grad, scan": timed(lambda: user_scan(
            user, to_user(user, params), train.x, train.y, jnp.asarray(order), key, lr))}
    if set(formulations(net)) != {"patches"}:
        patched = as_patches(net)
        runners[FIT_PATCHES] = timed(lambda: fn.train.fit(key, patched, params, train, None,
                                                          epochs=1, lr=LR, batch_size=bs,
                                                          verbose=False))
    if fn.pieces.step_pieces(net, bs) > 1:
        whole = whole_steps(net)
        runners[FIT_WHOLE] = timed(lambda: fn.train.fit(key, whole, params, train, None,
                                                        epochs=1, lr=LR, batch_size=bs,
                                                        verbose=False))
    ours = lambda result: result[0]
    theirs = lambda result: from_user(user, params, result[0])
    return runners, {FIT: ours, REF: ours, FIT_PATCHES: ours, FIT_WHOLE: ours,
                     "lax.conv + jax.grad, jitted step": theirs,
                     "lax.conv + jax.grad, scan": theirs}


def torch_runners(torch, net, params, train, order, threads_list, compiled):
    """PyTorch eager at each thread count (and torch.compile at 1 thread if `compiled`), each
    on a model of its own, all on fit's batches; and how to read funcnn-layout params back
    from each."""
    x, labels = torch_loop.tensors(torch, train)
    order = torch.from_numpy(order.astype(np.int64))        # i64[steps, batch_size]
    runners, finals = {}, {}
    variants = [(f"PyTorch eager, {threads(t)}", t) for t in threads_list]
    for label, t in variants + ([("torch.compile, 1 thread", 1)] if compiled else []):
        copy, pairs = torch_loop.model(torch, net, params)
        if label.startswith("torch.compile"):
            copy = torch.compile(copy)
        runners[label] = torch_loop.train_runner(
            torch, copy, pairs, params, x, labels, lambda: order, threads=t, lr=LR,
            fresh_compile=label.startswith("torch.compile"))
        finals[label] = partial(lambda pairs, result: torch_loop.params_of(pairs, params), pairs)
    return runners, finals


def evaluate(bench, setting, name, net, params, test):
    """The test images through fn.model.forward and PyTorch's no_grad forward (each thread
    count), from the initial params; checks that funcnn, the lax.conv model and the PyTorch
    copy compute the same logits (so every row of the tables computes one function)."""
    torch, user = bench.torch, UserCNN.of(net)
    x = test.x[:bench.plan["cnn_eval_rows"]]
    runners = {"funcnn forward": timed(lambda: fn.model.forward(net, params, x))}
    if torch is not None:
        copy, _ = torch_loop.model(torch, net, params)
        copy.eval()
        x_t = torch.from_numpy(np.array(x))
        for t in bench.threads:
            runners[f"PyTorch no_grad, {threads(t)}"] = timed(partial(
                torch_loop.forward, torch, copy, x_t, t, bench.plan["cnn_eval_chunk"]))
    for runner in runners.values():
        runner()                                              # compile, warm up
    times = interleave(runners, bench.plan["cnn_eval_repeats"], setting.settle)
    ref = np.asarray(runners["funcnn forward"].last)
    scale = float(np.abs(ref).max())
    others = {"the lax.conv model": jax.jit(partial(user_forward, user, train=False, key=None))(
        to_user(user, params), x)[0]}
    others.update({f"the PyTorch copy ({label})": run.last for label, run in runners.items()
                   if label.startswith("PyTorch")})
    for who, out in others.items():
        gap = float(np.abs(np.asarray(out) - ref).max())
        bench.check(f"7. {name}: {who} computes funcnn's logits", gap < 1e-4 * scale,
                    f"largest gap {gap:.1e} over {len(x):,} test images (logits up to "
                    f"{scale:.2f})")
    return name, len(x), times


def _report(bench, plan, table, evals, results, notes):
    torch_rows = "" if bench.torch is None else " PyTorch eager at each thread count,"
    bench.section(
        "7. CNNs on Fashion-MNIST: one SGD step (ms), hand-written VJPs vs autodiff and PyTorch",
        f"The same batches (fit's shuffle of the first steps x batch training rows), SGD lr "
        f"{LR}, float32, the same initial params for every row; each timed call runs all the "
        f"steps from those params. {plan['cnn_repeats']} repeat(s), interleaved "
        f"(funcnn fit, the autodiff referee, the lax.conv step (a) jitted and called per batch, "
        f"(b) in a jitted scan,{torch_rows} torch.compile where it worked). Time vs funcnn: "
        "median of the per-repeat ratios [ratio of the minimums]; >1 means funcnn is faster.",
        ["implementation", "network, batch", "steps", "ms / step: median [min]",
         "time vs funcnn", "GFLOP/s", "share of square matmul", "first call s",
         "probe loss after"],
        table,
        notes + ["GFLOP/s: the convolutions' and dense layers' flops (forward, dL/dW, and dL/dx "
                 "for all but the first layer; pools, BatchNorm and activations not counted) "
                 "over the median step time. First call: compile (XLA, Inductor) and warm-up.",
                 "Probe loss: funcnn's training-mode loss of each row's final params on the "
                 f"first {PROBE_ROWS} trained rows (BatchNorm's batch statistics, one fixed "
                 "dropout mask); PyTorch's params are copied back into funcnn's layout."])
    eval_rows = []
    for name, n, times in evals:
        base = times["funcnn forward"]
        for label, t in times.items():
            eval_rows.append([label, name, fmt_s(t, 1e3, 1), f"{n / med(t):,.0f}",
                              fmt_ratio(t, base)])
    bench.section(
        "7b. CNNs on Fashion-MNIST: evaluating the test images (ms)",
        f"{evals[0][1]:,} test images, evaluation mode (BatchNorm's running statistics, no "
        "dropout), from the initial params: `fn.model.forward` (which runs big inputs in "
        "pieces) against PyTorch's `torch.no_grad()` forward in chunks of "
        f"{plan['cnn_eval_chunk']:,} (the fastest of 500, 1,000 and all 10,000 at once when "
        f"measured). {plan['cnn_eval_repeats']} repeat(s), interleaved.",
        ["implementation", "network", "ms: median [min]", "images/s", "time vs funcnn"],
        eval_rows)

    # headlines: the batch-128 rows of both networks, each against its rival at its best
    def best(per_step, prefix):
        names = [k for k in per_step if k.startswith(prefix)]
        return min(names, key=lambda k: med(per_step[k])) if names else None

    keys = [k for k in results if k[1] == 128]
    for prefix, target in (("PyTorch eager", 1.3), ("lax.conv + jax.grad, jitted step", 3.0),
                           ("jax.grad of funcnn's forward", 1.2), ("torch.compile", None)):
        parts, ok = [], True
        for key in keys:
            per_step = results[key]
            rival = best(per_step, prefix)
            if rival is None:
                continue
            ok &= pair_ratio(per_step[rival], per_step[FIT]) >= (target or 0)
            parts.append(f"{key[0]} {fmt_ratio(per_step[rival], per_step[FIT])}"
                         + (f" ({rival.split(', ')[-1]})" if prefix == "PyTorch eager" else ""))
        if parts:
            bench.headline(f"CNN training step at batch 128, funcnn fit vs {prefix}"
                           f"{' at its best thread count' if prefix == 'PyTorch eager' else ''}",
                           "; ".join(parts), target and f">= {target}x",
                           ok if target else None)
    parts = [f"{key[0]} {fmt_ratio(results[key][FIT_PATCHES], results[key][FIT])}"
             for key in keys if FIT_PATCHES in results[key]]
    if parts:
        bench.headline("CNN training step at batch 128, funcnn fit (Conv2D 'auto': Winograd "
                       "for 3x3 stride-1 kernels on >= 32 channels) vs every Conv2D as the "
                       "patch product (>1: auto faster)", "; ".join(parts), None, None)
    parts = [f"{key[0]} {fmt_ratio(results[key][FIT_WHOLE], results[key][FIT])} "
             f"({fn.pieces.step_pieces(NETS[key[0]](), 128)} pieces)"
             for key in keys if FIT_WHOLE in results[key]]
    if parts:
        bench.headline("CNN training step at batch 128, funcnn fit (a big step in pieces of "
                       "rows) vs each step whole (>1: pieces faster)", "; ".join(parts), None,
                       None)
    parts, ok = [], True
    for name, n, times in evals:
        rival = best(times, "PyTorch")
        if rival is not None:
            ok &= pair_ratio(times[rival], times["funcnn forward"]) >= 1.0
            parts.append(f"{name} {fmt_ratio(times[rival], times['funcnn forward'])}")
    if parts:
        bench.headline(f"CNN evaluation of {evals[0][1]:,} test images, fn.model.forward vs "
                       "PyTorch no_grad at its best thread count", "; ".join(parts),
                       ">= 1.0x", ok)
