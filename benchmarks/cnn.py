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
- jax.grad of funcnn's forward, the autodiff referee: `net.layer.apply(train=True)` and the
  loss under `jax.value_and_grad`, in a jitted `lax.scan` with fit's batches and dropout
  masks (so its losses must match fit's);
- lax.conv + jax.grad, what a JAX user writes: `lax.conv_general_dilated` (NHWC, HWIO),
  `lax.reduce_window` max pool, `jax.grad`; (a) a jitted step called from Python once per
  batch, (b) the same step in a jitted `lax.scan`;
- PyTorch eager, NCHW, the same weights (HWIO -> OIHW, dense w -> w.T, the first dense's rows
  reordered from NHWC's flatten order to NCHW's), at 1 thread and at every core;
- torch.compile of that model (full plan, batch 128, 1 thread).
Then the 10,000 test images through `fn.model.forward` and through PyTorch's `no_grad` forward.
The learning checks run every implementation's final params through one probe: funcnn's
training-mode loss on the first 512 of the trained rows (a fixed dropout mask).
"""
from __future__ import annotations

import subprocess
import sys
import time
import warnings
from contextlib import contextmanager, nullcontext as _nothing
from dataclasses import dataclass, field
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import funcnn as fn
from funcnn.examples import fashion_cnn

L, M = fn.layers, fn.math
LR = 0.01
FIT, REF = "funcnn fit", "jax.grad of funcnn's forward, scan"   # the two rows checked alike
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


# --- the autodiff referee: fit's loop with jax.grad of funcnn's own forward ------------------

@partial(jax.jit, static_argnames=("net", "batch_size"))
def referee_epoch(key, params, train, lr, *, net, batch_size):
    """One epoch as `fit` runs it (its epoch key, shuffle and dropout masks), each step's
    gradient from `jax.value_and_grad` of `net.layer.apply(train=True)` and the loss.
    Returns (params, losses: f32[steps], the loss before each step)."""
    n = train.x.shape[0]
    steps = -(-n // batch_size)
    key = fn.train.epoch_keys(key, 1)[0]
    masks = None
    if net.layer.needs_key:                                   # fit's split: shuffle, masks
        key, k_masks = jax.random.split(key)
        masks = jax.random.split(k_masks, steps)
    rows, w = fn.data.batches(key, n, batch_size, train.x.dtype)

    def loss(params, x, y, w, key):
        out, caches = net.layer.apply(params, x, True, key)
        return net.loss.fn(out, y, w), caches

    def step(params, inputs):
        rows, w, key = inputs
        (value, caches), g = jax.value_and_grad(loss, has_aux=True)(
            params, train.x[rows], train.y[rows], w, key)
        new = fn.model.sgd(params, g, lr)                     # p <- p - lr dL/dp
        return fn.model.update_state(net, params, new, caches), value   # BatchNorm's stats

    return lax.scan(step, params, (rows, w, masks))


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


# --- what a JAX user writes: lax.conv_general_dilated, reduce_window, jax.grad ----------------

@dataclass(frozen=True)
class UserCNN:
    """The two networks in plain lax, params as a dict: conv1, conv2, [bn], dense1, dense2."""
    batchnorm: bool
    dropout: float

    @staticmethod
    def of(net) -> UserCNN:
        rates = [layer.rate for layer in net.layer.layers if isinstance(layer, L.Dropout)]
        return UserCNN(any(isinstance(layer, L.BatchNorm) for layer in net.layer.layers),
                       rates[0] if rates else 0.0)

    @property
    def names(self):
        return ("conv1", "conv2") + (("bn",) if self.batchnorm else ()) + ("dense1", "dense2")


def to_user(user, params) -> dict:
    return dict(zip(user.names, [p for p in params if p != ()], strict=True))


def from_user(user, params, p_user) -> tuple:
    """funcnn's params tuple with the user's numbers in place."""
    values = iter(p_user[name] for name in user.names)
    return tuple(p if p == () else next(values) for p in params)


def user_forward(user, p, x, train, key):
    """x: f32[n, 784] -> (logits f32[n, 10], BatchNorm's batch (mean, var) or None)."""
    conv = lambda x, q: lax.conv_general_dilated(
        x, q["w"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")) + q["b"]
    pool = lambda x: lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1),
                                       "VALID")
    x = x.reshape(-1, 28, 28, 1)
    x = pool(jax.nn.relu(conv(x, p["conv1"])))               # [n, 14, 14, c1]
    x = conv(x, p["conv2"])
    stats = None
    if user.batchnorm:
        bn = p["bn"]
        if train:
            mu, var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
            count = x.shape[0] * x.shape[1] * x.shape[2]
            stats = (mu, var * count / (count - 1))           # running var: unbiased
        else:
            mu, var = bn["mean"], bn["var"]
        x = bn["gamma"] * (x - mu) * lax.rsqrt(var + 1e-5) + bn["beta"]
    x = pool(jax.nn.relu(x)).reshape(x.shape[0], -1)          # [n, 7 * 7 * c2], NHWC order
    if train and user.dropout:
        keep = jax.random.bernoulli(key, 1 - user.dropout, x.shape)
        x = jnp.where(keep, x / (1 - user.dropout), 0.0)
    x = jax.nn.relu(x @ p["dense1"]["w"] + p["dense1"]["b"])
    return x @ p["dense2"]["w"] + p["dense2"]["b"], stats


def user_step(user, p, x, y, key, lr):
    """One SGD step of the user's model: (params, loss before the step)."""
    def loss(p):
        z, stats = user_forward(user, p, x, True, key)
        return -(y * jax.nn.log_softmax(z)).sum(axis=-1).mean(), stats
    (value, stats), g = jax.value_and_grad(loss, has_aux=True)(p)
    p = jax.tree.map(lambda v, d: v - lr * d, p, g)
    if stats is not None:                                     # running statistics, momentum 0.1
        old = p["bn"]
        p["bn"] = {**old, "mean": 0.9 * old["mean"] + 0.1 * stats[0],
                   "var": 0.9 * old["var"] + 0.1 * stats[1]}
    return p, value


@partial(jax.jit, static_argnames="user")
def user_jit_step(user, p, x_all, y_all, rows, key, i, lr):
    """The step a user jits and calls from Python, the batch gathered on the device."""
    return user_step(user, p, x_all[rows], y_all[rows], jax.random.fold_in(key, i), lr)


@partial(jax.jit, static_argnames="user")
def user_scan(user, p, x_all, y_all, rows, key, lr):
    """The same steps in one jitted lax.scan over the batches' rows."""
    def step(p, inputs):
        i, r = inputs
        return user_step(user, p, x_all[r], y_all[r], jax.random.fold_in(key, i), lr)
    return lax.scan(step, p, (jnp.arange(rows.shape[0]), rows))


# --- PyTorch: the same network and weights, NCHW ---------------------------------------------

def torch_model(torch, net, params):
    """A torch.nn.Sequential computing what `net` computes, holding `params`.
    Returns (model, pairs): pairs = (funcnn layer index, torch module, its kind) for every
    layer with numbers, for copying params in and out."""
    nn = torch.nn
    shapes = [net.input_shape] + net.layer.shapes(net.input_shape)
    modules, pairs, flat_from = [], [], None
    for i, layer in enumerate(net.layer.layers):
        shape_in, shape_out = shapes[i], shapes[i + 1]
        if isinstance(layer, L.Reshape):
            if shape_out[2] != 1:
                raise ValueError("the PyTorch copy handles one input channel only")
            modules.append(nn.Unflatten(1, (1, *shape_out[:2])))   # c = 1: NHWC = NCHW
        elif isinstance(layer, L.Conv2D):
            if layer.padding != "SAME" or layer.stride != (1, 1):
                raise ValueError("the PyTorch copy handles SAME, stride 1 convolutions only")
            conv = nn.Conv2d(shape_in[2], layer.filters, layer.kernel, padding="same")
            modules.append(conv)
            pairs.append((i, conv, "conv"))
        elif isinstance(layer, L.MaxPool2D):
            modules.append(nn.MaxPool2d(layer.window, layer.stride))
        elif isinstance(layer, L.BatchNorm):
            bn = nn.BatchNorm2d(shape_in[2], eps=layer.eps, momentum=layer.momentum)
            modules.append(bn)
            pairs.append((i, bn, "bn"))
        elif isinstance(layer, L.Flatten):
            modules.append(nn.Flatten())
            flat_from = shape_in                               # (h, w, c): NHWC's order
        elif isinstance(layer, L.Dropout):
            modules.append(nn.Dropout(layer.rate))
        elif isinstance(layer, L.Dense):
            linear = nn.Linear(shape_in[0], layer.n)
            modules.append(linear)
            pairs.append((i, linear, ("dense", flat_from)))
            flat_from = None                                   # only the first dense reorders
            if layer.act is not None:
                modules.append(_torch_act(nn, layer.act))
        elif isinstance(layer, L.Act):
            modules.append(_torch_act(nn, layer.act))
        else:
            raise ValueError(f"no PyTorch copy of {layer!r}")
    model = nn.Sequential(*modules)
    load_torch(torch, pairs, params)
    return model, pairs


def _torch_act(nn, act):
    if act.name != "relu":
        raise ValueError(f"no PyTorch copy of the activation {act.name}")
    return nn.ReLU()


def load_torch(torch, pairs, params):
    """Copy funcnn's params into the torch modules, in place (a compiled model stays valid)."""
    with torch.no_grad():
        for i, module, kind in pairs:
            p = {k: np.array(v) for k, v in params[i].items()}        # writable copies
            if kind == "conv":
                module.weight.copy_(torch.from_numpy(p["w"].transpose(3, 2, 0, 1).copy()))
                module.bias.copy_(torch.from_numpy(p["b"]))    # HWIO -> OIHW
            elif kind == "bn":
                for ours, theirs in (("gamma", "weight"), ("beta", "bias"),
                                     ("mean", "running_mean"), ("var", "running_var")):
                    getattr(module, theirs).copy_(torch.from_numpy(p[ours]))
            else:
                w, flat = p["w"], kind[1]
                if flat is not None:                           # rows (h, w, c) -> (c, h, w)
                    h, w_, c = flat
                    w = w.reshape(h, w_, c, -1).transpose(2, 0, 1, 3).reshape(h * w_ * c, -1)
                module.weight.copy_(torch.from_numpy(w.T.copy()))   # [d_in, d_out] -> [out, in]
                module.bias.copy_(torch.from_numpy(p["b"]))


def torch_params(pairs, params) -> tuple:
    """The torch modules' numbers back in funcnn's layout (inverse of load_torch)."""
    out = list(params)
    for i, module, kind in pairs:
        get = lambda t: t.detach().numpy().copy()
        if kind == "conv":
            out[i] = {"w": get(module.weight).transpose(2, 3, 1, 0), "b": get(module.bias)}
        elif kind == "bn":
            out[i] = {"gamma": get(module.weight), "beta": get(module.bias),
                      "mean": get(module.running_mean), "var": get(module.running_var)}
        else:
            w = get(module.weight).T                           # [d_in, d_out]
            if kind[1] is not None:
                h, w_, c = kind[1]
                w = w.reshape(c, h, w_, -1).transpose(1, 2, 0, 3).reshape(h * w_ * c, -1)
            out[i] = {"w": w, "b": get(module.bias)}
    return jax.tree.map(jnp.asarray, tuple(out))


TORCH_COMPILE_TRY = """
import torch
torch.set_num_threads(1)
m = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(),
                        torch.nn.Flatten(), torch.nn.Linear(4 * 8 * 8, 10))
torch.compile(m)(torch.randn(4, 1, 8, 8)).sum().backward()
print("ok")
"""


def torch_compile_works(timeout=240) -> str | None:
    """None if torch.compile compiles a tiny conv net's forward and backward in a fresh process
    within `timeout` seconds (a missing compiler or a hang cannot stall this one); else why."""
    try:
        done = subprocess.run([sys.executable, "-c", TORCH_COMPILE_TRY], capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"a tiny model did not compile within {timeout} s"
    if done.returncode or "ok" not in done.stdout:
        lines = (done.stderr or done.stdout).strip().splitlines()
        return f"a tiny model failed: {lines[-1] if lines else f'exit {done.returncode}'}"
    return None


# --- the section -----------------------------------------------------------------------------

@dataclass
class Setting:
    """What every configuration shares: the run module, the keys, the probe, the pause."""
    run: object                    # benchmarks/run.py's module (its helpers)
    settle: float                  # seconds before each call (multi-thread rivals spin)
    probe: fn.data.Dataset         # the first PROBE_ROWS training rows
    compile_problem: str | None    # why torch.compile is not timed, or None
    key_init: jax.Array = field(default_factory=lambda: jax.random.key(0))
    key_fit: jax.Array = field(default_factory=lambda: jax.random.key(1))   # fit's shuffle
    key_probe: jax.Array = field(default_factory=lambda: jax.random.key(2))  # probe's mask


def conv_formulation() -> str:
    """How funcnn's Conv2D computes on this backend: 'patches' (im2col) or 'conv'."""
    return L.Conv2D(1, 3)._as()


def cnn(bench):
    """Time a training step of the two CNNs every way above, then evaluation; add the checks,
    the two tables and the headlines to `bench`."""
    run = sys.modules[type(bench).__module__]          # benchmarks/run.py (or its __main__)
    plan, torch = bench.plan, bench.torch
    train, test = bench.fashion
    if torch is None:
        problem = "torch is not installed"
    elif not plan["cnn_compile"]:
        problem = "not tried in --quick: compiling takes tens of seconds"
    else:
        problem = torch_compile_works()
    setting = Setting(run, run.SETTLE_S if len(bench.threads) > 1 else 0.0,
                      fn.data.Dataset(train.x[:PROBE_ROWS], train.y[:PROBE_ROWS]), problem)
    rows, notes, results, evals = [], [], {}, []
    for name, bs in [("small CNN", bs) for bs in plan["cnn_batches"]] + [("fashion-cnn", 128)]:
        net = NETS[name]()
        params = fn.model.init(setting.key_init, net)
        per_step, config_rows, note = train_config(bench, setting, name, net, params, bs, train)
        rows += config_rows
        notes.append(note)
        results[(name, bs)] = per_step
        if bs == 128:                                      # evaluation: once per network
            evals.append(evaluate(bench, setting, name, net, params, test))
    notes[:0] = [f"CPU: {run.cpu_info()}; XLA used all {run.CORES} cores (its default), PyTorch "
                 f"{' and '.join(map(str, bench.threads))} thread(s). funcnn's Conv2D ran as "
                 f"{conv_formulation()} (its formulation 'auto' on {jax.default_backend()}).",
                 "torch.compile: " + (
                     "`torch.compile(model)` (forward and backward through Inductor; the SGD "
                     "step eager), at 1 thread and batch 128 only; its first call compiled "
                     "with Inductor's caches off" if setting.compile_problem is None
                     else f"not timed ({setting.compile_problem})") + "."]
    if torch is None:
        notes.append("torch is not installed: the PyTorch rows are skipped "
                     "(pip install -e .[bench]).")
    _report(bench, run, plan, rows, evals, results, notes)


def train_config(bench, setting, name, net, params, bs, train_all):
    """One network at one batch size: every implementation's N steps, interleaved with a
    large square matmul; the learning checks. Returns (ms per step by row, table rows, note)."""
    run, plan = setting.run, bench.plan
    flops = step_flops(net)[1] * bs
    steps = int(min(plan["cnn_steps"], max(4, plan["cnn_flops"] // flops)))
    train = fn.data.Dataset(train_all.x[:steps * bs], train_all.y[:steps * bs])
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
    runners["square matmul"] = run.matmul_timer(square, square, square, False, False, 1)
    runners["square matmul"]()                              # compile
    times = run.interleave(runners, plan["cnn_repeats"], setting.settle)
    square_rate = 2 * square ** 3 / run.med(times.pop("square matmul"))
    per_step = {label: [t / steps for t in ts] for label, ts in times.items()}

    # did each learn? One probe for all: funcnn's loss of each row's final params
    loss = lambda p: float(probe_loss(net, p, setting.probe, setting.key_probe))
    before = loss(params)
    after = {label: loss(finals[label](runners[label].last)) for label in per_step}
    for label, value in after.items():
        bench.check(f"7. {name} b{bs}: {label} learns", value < before,
                    f"probe loss {before:.4f} -> {value:.4f} after {steps} steps")
    means = (float(runners[FIT].last[1]["train_loss"][-1]), float(runners[REF].last[1].mean()))
    bench.check(f"7. {name} b{bs}: funcnn and jax.grad of its forward train alike",
                abs(after[FIT] - after[REF]) < 1e-3 * after[FIT],
                f"probe losses {after[FIT]:.6f} and {after[REF]:.6f} after {steps} steps; "
                "mean training losses {:.6f} and {:.6f}".format(*means))
    rows = []
    for label, t in per_step.items():
        rate = flops / run.med(t)
        rows.append([label, f"{name}, {bs}", steps, run.fmt_s(t, 1e3, 2),
                     run.fmt_ratio(t, per_step[FIT]), f"{rate / 1e9:.1f}",
                     f"{rate / square_rate:.0%}", f"{first[label]:.1f}", f"{after[label]:.4f}"])
    note = (f"{name}, batch {bs}: {flops / bs / 1e6:.2f} MFLOP per sample per step, "
            f"{flops / 1e9:.2f} GFLOP per step; the [{square}]^2 matmul ran at "
            f"{square_rate / 1e9:.0f} GFLOP/s (median) in the same repeats; probe loss "
            f"{before:.4f} at the initial params.")
    return per_step, rows, note


def jax_runners(setting, net, params, train, order, bs):
    """The JAX rows' runners, and how to read funcnn-layout params from each one's result."""
    run, key, lr = setting.run, setting.key_fit, np.float32(LR)
    user = UserCNN.of(net)

    def user_loop(p=to_user(user, params)):                 # (a): a loop in Python
        for i in range(len(order)):
            p, loss = user_jit_step(user, p, train.x, train.y, order[i], key, i, lr)
        return p, loss

    runners = {
        FIT: run.timed(lambda: fn.train.fit(key, net, params, train, None, epochs=1, lr=LR,
                                            batch_size=bs, verbose=False)),
        REF: run.timed(lambda: referee_epoch(key, params, train, lr, net=net, batch_size=bs)),
        "lax.conv + jax.grad, jitted step": run.timed(user_loop),
        "lax.conv + jax.grad, scan": run.timed(lambda: user_scan(
            user, to_user(user, params), train.x, train.y, jnp.asarray(order), key, lr))}
    ours = lambda result: result[0]
    theirs = lambda result: from_user(user, params, result[0])
    return runners, {FIT: ours, REF: ours, "lax.conv + jax.grad, jitted step": theirs,
                     "lax.conv + jax.grad, scan": theirs}


def torch_runners(torch, net, params, train, order, threads_list, compiled):
    """PyTorch eager at each thread count (and torch.compile at 1 thread if `compiled`), each
    on a model of its own; and how to read funcnn-layout params back from each."""
    x = torch.from_numpy(np.array(train.x))                 # writable copies
    labels = torch.from_numpy(np.array(train.y).argmax(axis=1))
    order = torch.from_numpy(order.astype(np.int64))
    runners, finals = {}, {}
    variants = [(f"PyTorch eager, {t} thread{'s' if t > 1 else ''}", t) for t in threads_list]
    for label, threads in variants + ([("torch.compile, 1 thread", 1)] if compiled else []):
        model, pairs = torch_model(torch, net, params)
        if label.startswith("torch.compile"):
            model = torch.compile(model)
        runners[label] = torch_runner(torch, model, pairs, params, x, labels, order, threads,
                                      fresh_compile=label.startswith("torch.compile"))
        finals[label] = partial(lambda pairs, result: torch_params(pairs, params), pairs)
    return runners, finals


def torch_runner(torch, model, pairs, params, x, labels, order, threads, fresh_compile=False):
    """A runner: the usual eager loop over the given batches (forward, cross-entropy,
    backward, SGD), from funcnn's initial params copied in place before each call (a
    compiled model stays valid). `fresh_compile`: the first call compiles with Inductor's
    on-disk caches off, so its time is the compile's, not a cache hit of an earlier run."""
    def runner():
        torch.set_num_threads(threads)
        load_torch(torch, pairs, params)
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=LR)
        start = time.perf_counter()
        with _no_caches() if fresh_compile and not hasattr(runner, "last") else _nothing():
            for rows in order:
                out = model(x[rows])
                loss = torch.nn.functional.cross_entropy(out, labels[rows])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        runner.last = loss.item()
        return time.perf_counter() - start
    return runner


@contextmanager
def _no_caches():
    """Inductor with its on-disk caches off (for one compile that must really compile)."""
    import torch._inductor.config as inductor
    with inductor.patch(force_disable_caches=True), warnings.catch_warnings():
        warnings.filterwarnings("ignore", "dynamo_pgo force disabled")   # what we asked for
        yield


def evaluate(bench, setting, name, net, params, test):
    """The test images through fn.model.forward and PyTorch's no_grad forward (each thread
    count), from the initial params; checks that funcnn, the lax.conv model and the PyTorch
    copy compute the same logits (so every row of the tables computes one function)."""
    torch, run, user = bench.torch, setting.run, UserCNN.of(net)
    x = test.x[:bench.plan["cnn_eval_rows"]]
    runners = {"funcnn forward": run.timed(lambda: fn.model.forward(net, params, x))}
    if torch is not None:
        model, _ = torch_model(torch, net, params)
        model.eval()
        x_t = torch.from_numpy(np.array(x))
        chunk = bench.plan["cnn_eval_chunk"]
        for threads in bench.threads:
            def forward(threads=threads):
                torch.set_num_threads(threads)
                with torch.no_grad():
                    return torch.cat([model(x_t[i:i + chunk])
                                      for i in range(0, len(x_t), chunk)]).numpy()
            runners[f"PyTorch no_grad, {threads} thread{'s' if threads > 1 else ''}"] = \
                run.timed(forward)
    for runner in runners.values():
        runner()                                              # compile, warm up
    times = run.interleave(runners, bench.plan["cnn_eval_repeats"], setting.settle)
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


def _report(bench, run, plan, rows, evals, results, notes):
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
        rows,
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
            eval_rows.append([label, name, run.fmt_s(t, 1e3, 1), f"{n / run.med(t):,.0f}",
                              run.fmt_ratio(t, base)])
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
        return min(names, key=lambda k: run.med(per_step[k])) if names else None

    keys = [k for k in results if k[1] == 128]
    for prefix, target in (("PyTorch eager", 1.3), ("lax.conv + jax.grad, jitted step", 3.0),
                           ("jax.grad of funcnn's forward", 1.2), ("torch.compile", None)):
        parts, ok = [], True
        for key in keys:
            per_step = results[key]
            rival = best(per_step, prefix)
            if rival is None:
                continue
            ok &= run.pair_ratio(per_step[rival], per_step[FIT]) >= (target or 0)
            parts.append(f"{key[0]} {run.fmt_ratio(per_step[rival], per_step[FIT])}"
                         + (f" ({rival.split(', ')[-1]})" if prefix == "PyTorch eager" else ""))
        if parts:
            bench.headline(f"CNN training step at batch 128, funcnn fit vs {prefix}"
                           f"{' at its best thread count' if prefix == 'PyTorch eager' else ''}",
                           "; ".join(parts), target and f">= {target}x",
                           ok if target else None)
    parts, ok = [], True
    for name, n, times in evals:
        rival = best(times, "PyTorch")
        if rival is not None:
            ok &= run.pair_ratio(times[rival], times["funcnn forward"]) >= 1.0
            parts.append(f"{name} {run.fmt_ratio(times[rival], times['funcnn forward'])}")
    if parts:
        bench.headline(f"CNN evaluation of {evals[0][1]:,} test images, fn.model.forward vs "
                       "PyTorch no_grad at its best thread count", "; ".join(parts),
                       ">= 1.0x", ok)
