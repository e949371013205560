"""PyTorch's own ensemble recipe, the rival of section 4 (ensembles): m copies of the Clojure
network (2-8-2 sigmoid, MSE) stacked with `torch.func.stack_module_state`, and one SGD step of
all of them at once with `vmap(grad(loss))` over `functional_call` (the recipe of PyTorch's
"Model ensembling" tutorial, trained rather than only evaluated). Each network has its own
uniform(-0.5, 0.5) init (as the Clojure network's `model.uniform(0.5)`) and its own shuffle of
the rows every epoch (`argsort` of one row of uniform numbers per network), batches in order,
the last partial batch dropped as `fit_many` drops it.

`torch` is passed in (it is optional: `pip install -e .[bench]`); the runner sets its thread
count on every call, as rows at different counts interleave.
"""
from __future__ import annotations

import copy
import time

import numpy as np


def clojure_net(torch, generator):
    """One 2-8-2 sigmoid network, every weight and bias uniform(-0.5, 0.5)."""
    nn = torch.nn
    net = nn.Sequential(nn.Linear(2, 8), nn.Sigmoid(), nn.Linear(8, 2), nn.Sigmoid())
    with torch.no_grad():
        for p in net.parameters():
            p.uniform_(-0.5, 0.5, generator=generator)
    return net


def ensemble_runner(torch, x, y, m, *, epochs, batch_size, lr, threads, seed=0):
    """A runner (see timing.py) training m networks at once on rows x [n, 2] with one-hot
    targets y [n, 2] (float32 arrays): `epochs` epochs of SGD at `lr`, batches of `batch_size`,
    MSE (mean over the batch and the outputs). The inits are made once, here; each call starts
    from a copy of them, draws its shuffles from a generator seeded with `seed`, and keeps the
    trained stacked params on `run.last`. Returns seconds."""
    from torch.func import functional_call, grad, stack_module_state, vmap
    g = torch.Generator().manual_seed(seed)
    params0, buffers = stack_module_state([clojure_net(torch, g) for _ in range(m)])
    params0 = {k: v.detach().clone() for k, v in params0.items()}
    base = copy.deepcopy(clojure_net(torch, g)).to("meta")
    x, y = torch.from_numpy(np.array(x, np.float32)), torch.from_numpy(np.array(y, np.float32))
    n = x.shape[0]

    def loss(p, b, xb, yb):
        return ((functional_call(base, (p, b), (xb,)) - yb) ** 2).mean()

    step = vmap(grad(loss))

    def run():
        torch.set_num_threads(threads)
        start = time.perf_counter()
        gen = torch.Generator().manual_seed(seed + 1)
        params = {k: v.clone() for k, v in params0.items()}
        with torch.no_grad():
            for _ in range(epochs):
                perms = torch.argsort(torch.rand(m, n, generator=gen), dim=1)
                for s in range(0, n - batch_size + 1, batch_size):
                    idx = perms[:, s:s + batch_size]                 # [m, batch]
                    grads = step(params, buffers, x[idx], y[idx])
                    for k in params:
                        params[k].sub_(lr * grads[k])
        run.last = params
        return time.perf_counter() - start

    run.forward = lambda params, xt: vmap(
        lambda p, b: functional_call(base, (p, b), (xt,)))(params, buffers)
    return run


def accuracy(torch, run, x, y) -> float:
    """Mean over the networks of each one's accuracy on rows x, one-hot y (after a call)."""
    with torch.no_grad():
        out = run.forward(run.last, torch.from_numpy(np.array(x, np.float32)))   # [m, n, 2]
    labels = torch.from_numpy(np.array(y).argmax(axis=1))
    return float((out.argmax(dim=2) == labels).float().mean())
