"""Seed 3, "a neural network from scratch in 100 lines of Python": Linear / ReLU / Linear /
LogSoftmax with an NLL loss and an optimizer step, a random mini-batch every step.

funcnn's form of the seed's `SequentialNN`: the layers are `mlp([784, 128, 10],
hidden=relu, output=log_softmax, loss=nll)` (Xavier init, as the seed's MLP), backward is
`value_and_grads` (the layers' VJPs in reverse), and `fit_steps` draws a random batch each
step. The seed claims 98 % on the digits MNIST after 20 s of CPU; here it is Fashion-MNIST,
a harder set: the run reports its own number after `--seconds` and after `--steps`.
"""
import time

import jax

import funcnn as fn

HELP = "seed 3: Linear/ReLU/LogSoftmax + NLL, random batches, a wall-clock budget"
DESCRIPTION = __doc__.split("\n\n")[1].replace("\n", " ")
CHUNK = 500   # steps per compiled call: the clock is read between calls, never per step


def add_arguments(p, positive_int, positive_float):
    p.add_argument("--seconds", type=positive_float, default=20.0,
                   help="training time budget in seconds (default 20, the seed's claim)")
    p.add_argument("--steps", type=positive_int, default=5000,
                   help="then, from the same start, a fixed number of steps (default 5000)")
    p.add_argument("--batch-size", type=positive_int, default=64, help="default 64")
    p.add_argument("--lr", type=positive_float, default=0.1, help="SGD step (default 0.1)")
    p.add_argument("--data", default=None, help="directory with the four IDX files")
    p.add_argument("--download", action="store_true", help="fetch the files if missing")
    return "images/sequential.svg"


def run(args) -> int:
    train, test = fn.data.fashion_mnist(args.data, download=args.download)
    net = fn.model.mlp([784, 128, 10], hidden=fn.math.relu, output=fn.math.log_softmax,
                       loss=fn.losses.nll, init=fn.model.glorot())
    k_init, k_budget, k_steps = jax.random.split(fn.rng.key(args.seed), 3)
    start = fn.model.init(k_init, net)
    print(f"{net}: SGD lr {args.lr}, random batches of {args.batch_size}")

    # 1. a wall-clock budget: compiled chunks of CHUNK steps until the time is up
    params, state, steps, losses = start, None, 0, []
    began = time.perf_counter()
    for k in _keys(k_budget):
        params, state, chunk = fn.train.fit_steps(k, net, params, train, steps=CHUNK,
                                                  batch_size=args.batch_size, lr=args.lr,
                                                  state=state)
        steps, losses = steps + CHUNK, losses + [float(chunk.mean())]
        elapsed = time.perf_counter() - began
        if not args.quiet:
            print(f"step {steps:>6}  mean loss {losses[-1]:.4f}  ({elapsed:.1f} s)")
        if elapsed >= args.seconds:
            break
    budget = _accuracy(net, params, test)
    print(f"after {elapsed:.1f} s ({steps} steps, compile included): test accuracy {budget:.4f}")

    # 2. a fixed number of steps, one compiled call
    params, _, losses_fixed = fn.train.fit_steps(k_steps, net, start, train, steps=args.steps,
                                                 batch_size=args.batch_size, lr=args.lr)
    fixed = _accuracy(net, params, test)
    print(f"after {args.steps} steps: test accuracy {fixed:.4f}")
    every = max(1, args.steps // 200)
    curve = fn.visualization.curves({"train_loss": losses_fixed[every - 1::every]}, args.out,
                                    x=list(range(every, args.steps + 1, every)), x_label="step",
                                    title=f"{net}, {args.steps} steps of {args.batch_size}")
    print(f"loss curve written to {curve}")
    return 0


def _keys(key):
    while True:                                   # one fresh key per chunk, split in order
        key, k = jax.random.split(key)
        yield k


def _accuracy(net, params, test) -> float:
    return float(fn.metrics.accuracy(fn.model.forward(net, params, test.x), test.y))
