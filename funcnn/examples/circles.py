"""Seed 4, DotCSV: two rings, [2, 4, 8, 1] sigmoid, MSE, and the boundary forming as it trains.

The seed's recipe: uniform [-1, 1] init, full batch, 2,000 steps at lr 0.05, a snapshot of the
boundary every 25 steps on a 50 x 50 grid over [-1.5, 1.5]^2. The seed's weight update sums
over the batch (its `dot(out.T, delta)`) where funcnn's losses are means, so its lr 0.05
is lr 0.05 * n / 2 here (the 2 from d(a - y)^2/da); `--recipe sound` uses mini-batches.
"""
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

import funcnn as fn

HELP = "DotCSV's rings: [2, 4, 8, 1] sigmoid, MSE; the training as an animation"
QUICK_COMPILE = True   # tiny networks: compile fast, not optimised (see funcnn.backend)
DESCRIPTION = __doc__.split("\n\n")[1].replace("\n", " ")
RECIPES = {   # epochs, batch size (None: full batch), lr (None: the seed's, converted), init
    "seed": (2000, None, None, fn.model.uniform(1.0)),
    "sound": (300, 16, 1.0, fn.model.glorot()),
}


def add_arguments(p, positive_int, positive_float):
    p.add_argument("--recipe", choices=sorted(RECIPES), default="seed",
                   help="seed: full batch, 2000 steps, lr 0.05 (seed units); sound: batch 16")
    p.add_argument("--topology", default="2,4,8,1",
                   help="layer sizes (default 2,4,8,1; the notebook also has 2,4,8,16,8,4,1)")
    p.add_argument("--points", type=positive_int, default=500, help="default 500")
    p.add_argument("--snapshot-every", type=positive_int, default=25,
                   help="epochs between two frames of the animation (default 25)")
    return "images/circles.svg"


def run(args) -> int:
    epochs, batch_size, lr, init = RECIPES[args.recipe]
    k_data, k_split, k_init, k_fit = jax.random.split(fn.rng.key(args.seed), 4)
    ds = fn.data.circles(k_data, n=args.points, factor=0.5, noise=0.05)
    train, test = fn.data.split(k_split, ds, train_fraction=0.8)
    sizes = [int(s) for s in args.topology.split(",")]
    net = fn.model.mlp(sizes, hidden=fn.math.sigmoid, output=fn.math.sigmoid,
                       loss=fn.losses.mse, init=init)
    n = train.x.shape[0]
    lr = lr if lr is not None else 0.05 * n / 2             # the seed's summed update, as a mean
    xs = ys = np.linspace(-1.5, 1.5, 50)                    # the seed's 50 x 50 grid
    grid = jnp.asarray(np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2), jnp.float32)
    print(f"{net}, recipe {args.recipe}: {n} training points, {epochs} epochs, "
          f"batch {batch_size or n}, lr {lr:g}")
    params, history = fn.train.fit(k_fit, net, fn.model.init(k_init, net), train, test,
                                   epochs=epochs, lr=lr, batch_size=batch_size or n,
                                   probe=partial(fn.model.forward, net, x=grid),
                                   verbose=0 if args.quiet else max(1, epochs // 20))
    # every `snapshot_every` epochs, the grid's p(class 1): computed inside the compiled loop
    every = args.snapshot_every
    frames = np.asarray(history["probe"][every - 1::every, :, 0]).reshape(-1, 50, 50)
    steps = list(range(every, epochs + 1, every))
    out = fn.visualization.animation(frames, xs, ys, np.asarray(ds.x),
                                     np.asarray(fn.metrics.predict_class(ds.y)),
                                     args.out.replace(".svg", "_training.svg"), steps=steps,
                                     still_path=args.out, title=f"{net}")
    curves = fn.visualization.curves(history, args.out.replace(".svg", "_curves.svg"),
                                     title=f"{net}, recipe {args.recipe}")
    print(f"test accuracy {float(history['test_accuracy'][-1]):.4f} after {epochs} epochs")
    saved = fn.history.save(history, args.out.replace(".svg", "_history.json"))
    print(f"pictures written: {args.out} (final boundary), {out} (animation, "
          f"{len(steps)} frames), {curves} (loss and accuracy); the history to {saved}")
    return 0
