"""PyTorch, the rival of sections 1, 2 and 7: a funcnn network copied into a
`torch.nn.Sequential` (NCHW; the same weights), the usual eager training loop, the no_grad
forward, and whether `torch.compile` works here.

The copy: Conv2D -> Conv2d (HWIO -> OIHW), Dense -> Linear (w -> w.T; the first dense after a
Flatten has its rows reordered from NHWC's flatten order to NCHW's), MaxPool2D, BatchNorm,
Dropout, ReLU; `params_of` reads the numbers back in funcnn's layout. `torch` is passed in (it
is optional: `pip install -e .[bench]`), and each runner sets its thread count on every call,
as the rows of one table interleave at different counts.
"""
from __future__ import annotations

import subprocess
import sys
import time
import warnings
from contextlib import contextmanager, nullcontext

import jax
import jax.numpy as jnp
import numpy as np

import funcnn as fn

L = fn.layers


def tensors(torch, ds: fn.data.Dataset):
    """(x: float32 tensor, labels: int64 tensor) of a Dataset with one-hot y (writable copies)."""
    return (torch.from_numpy(np.array(ds.x)),
            torch.from_numpy(np.array(ds.y).argmax(axis=1)))


def model(torch, net, params):
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
            modules += _act(nn, layer.act)
        elif isinstance(layer, L.Act):
            modules += _act(nn, layer.act)
        else:
            raise ValueError(f"no PyTorch copy of {layer!r}")
    copy = nn.Sequential(*modules)
    load(torch, pairs, params)
    return copy, pairs


def _act(nn, act) -> list:
    if act is None or act.name == "identity":
        return []
    if act.name != "relu":
        raise ValueError(f"no PyTorch copy of the activation {act.name}")
    return [nn.ReLU()]


def load(torch, pairs, params):
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


def params_of(pairs, params) -> tuple:
    """The torch modules' numbers back in funcnn's layout (inverse of load)."""
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


def train_runner(torch, copy, pairs, params, x, labels, batches, *, threads, lr, tally=False,
                 fresh_compile=False):
    """A runner (seconds per call) of the usual eager loop, DataLoader-free: for each batch of
    rows, forward, cross-entropy, backward, an SGD step; from funcnn's `params`, copied into
    `copy` before each call (a compiled model stays valid). `runner.last`: the trained model.
    batches(): one epoch's batches of row indices, called inside the timed region (where it
    shuffles, the shuffle is timed, as fit's is). tally: also sum the loss and the correct
    count per batch, as fit does. fresh_compile: the first call compiles with Inductor's
    on-disk caches off, so its time is the compile's, not a cache hit of an earlier run."""
    def run():
        torch.set_num_threads(threads)
        load(torch, pairs, params)
        copy.train()
        opt = torch.optim.SGD(copy.parameters(), lr=lr)
        loss_sum, correct = torch.zeros(()), torch.zeros((), dtype=torch.long)
        start = time.perf_counter()
        with _no_caches() if fresh_compile and not hasattr(run, "last") else nullcontext():
            for rows in batches():
                xb, yb = x[rows], labels[rows]
                out = copy(xb)
                loss = torch.nn.functional.cross_entropy(out, yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if tally:
                    loss_sum += loss.detach() * len(rows)
                    correct += (out.argmax(dim=1) == yb).sum()
        run.last = copy
        return time.perf_counter() - start
    return run


def epoch_runner(torch, net, params, x, labels, *, batch_size, threads, lr):
    """The MLP sections' PyTorch row: a runner of one epoch over all the rows of x, a new
    shuffle every call (torch.randperm), the loss and correct count tallied as fit does."""
    copy, pairs = model(torch, net, params)
    shuffle = torch.Generator().manual_seed(0)
    return train_runner(torch, copy, pairs, params, x, labels,
                        lambda: torch.randperm(len(x), generator=shuffle).split(batch_size),
                        threads=threads, lr=lr, tally=True)


def saved_bytes(torch, loss, not_counted=()) -> int:
    """Bytes of the distinct storages autograd saves for the backward while `loss()` runs a
    training forward (a `saved_tensors_hooks` tally, each storage once), less those of the
    tensors `not_counted` (the batch, the parameters: they exist before and after the step)."""
    seen = {}

    def pack(a):
        storage = a.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return a

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda a: a):
        value = loss()
    for a in not_counted:
        seen.pop(a.untyped_storage().data_ptr(), None)
    return sum(seen.values()), value


def forward(torch, copy, x, threads, chunk=None):
    """`copy`'s no_grad forward of x on `threads` threads, in chunks of `chunk` rows (all at
    once if None): logits as a NumPy array."""
    torch.set_num_threads(threads)
    chunk = chunk or len(x)
    with torch.no_grad():
        return torch.cat([copy(x[i:i + chunk]) for i in range(0, len(x), chunk)]).numpy()


@contextmanager
def _no_caches():
    """Inductor with its on-disk caches off (for one compile that must really compile)."""
    import torch._inductor.config as inductor
    with inductor.patch(force_disable_caches=True), warnings.catch_warnings():
        warnings.filterwarnings("ignore", "dynamo_pgo force disabled")   # what we asked for
        yield


COMPILE_TRY = """
import torch
torch.set_num_threads(1)
m = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(),
                        torch.nn.Flatten(), torch.nn.Linear(4 * 8 * 8, 10))
torch.compile(m)(torch.randn(4, 1, 8, 8)).sum().backward()
print("ok")
"""


def compile_works(timeout=240) -> str | None:
    """None if torch.compile compiles a tiny conv net's forward and backward in a fresh process
    within `timeout` seconds (a missing compiler or a hang cannot stall this one); else why."""
    try:
        done = subprocess.run([sys.executable, "-c", COMPILE_TRY], capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"a tiny model did not compile within {timeout} s"
    if done.returncode or "ok" not in done.stdout:
        lines = (done.stderr or done.stdout).strip().splitlines()
        return f"a tiny model failed: {lines[-1] if lines else f'exit {done.returncode}'}"
    return None
