"""A regression: real targets, y = sin(3x) + noise, fitted by 1 -> 32 -> 32 -> 1 tanh with mse.

The data are drawn here from the seed: x uniform in [-1, 1], y = sin(3x) + N(0, noise^2), 80%
to train on and 20% to test. The network ends with no activation (a real number out) and is
trained with Adam on mse (or huber, which pulls less on outliers); the picture draws the fit
against the data and the true curve, and a second picture the loss per epoch.
"""
import jax
import jax.numpy as jnp
import numpy as np

import funcnn as fn

HELP = "regression: a noisy sin(3x), 1 -> 32 -> 32 -> 1 tanh, mse or huber; the fit drawn"
QUICK_COMPILE = True   # a small network: compile fast, not optimised (see funcnn.backend)
DESCRIPTION = __doc__.split("\n\n")[1].replace("\n", " ")
LOSSES = {"mse": fn.losses.mse, "huber": fn.losses.huber}


def add_arguments(p, positive_int, positive_float):
    p.add_argument("--loss", choices=sorted(LOSSES), default="mse", help="default mse")
    p.add_argument("--epochs", type=positive_int, default=200, help="default 200")
    p.add_argument("--lr", type=positive_float, default=0.01,
                   help="Adam's learning rate (default 0.01)")
    p.add_argument("--batch-size", type=positive_int, default=32, help="default 32")
    p.add_argument("--points", type=positive_int, default=300, help="default 300")
    p.add_argument("--noise", type=float, default=0.15,
                   help="standard deviation of the noise added to sin(3x) (default 0.15)")
    return "images/regression.svg"


def noisy_curve(key, n: int, noise: float) -> fn.data.Dataset:
    """n points x: f32[n, 1] uniform in [-1, 1), y = sin(3x) + N(0, noise^2): f32[n, 1]."""
    k_x, k_noise = jax.random.split(key)
    x = fn.rng.draw_uniform(k_x, (n, 1), -1.0, 1.0)
    return fn.data.Dataset(x, jnp.sin(3 * x) + noise * fn.data.box_muller(k_noise, n)[:, None])


def run(args) -> int:
    if not args.noise >= 0:
        raise fn.checks.InputError(f"--noise must be >= 0, got {args.noise}")
    k_data, k_split, k_init, k_fit = jax.random.split(fn.rng.key(args.seed), 4)
    train, test = fn.data.split(k_split, noisy_curve(k_data, args.points, args.noise))
    loss = LOSSES[args.loss]
    net = fn.model.mlp([1, 32, 32, 1], hidden=fn.math.tanh, output=fn.math.identity, loss=loss,
                       init=fn.model.glorot())
    print(f"{net}: {train.x.shape[0]} training and {test.x.shape[0]} test points, "
          f"{args.epochs} epochs, Adam lr {args.lr}, batch {args.batch_size}")
    params, history = fn.train.fit(k_fit, net, fn.model.init(k_init, net), train, test,
                                   epochs=args.epochs, optimizer=fn.optim.adam(args.lr),
                                   batch_size=args.batch_size,
                                   verbose=False if args.quiet else max(1, args.epochs // 10))
    # the history's losses are the net's loss; the rmse, in y's units, comes from the test mse
    test_mse = float(fn.metrics.mse(fn.model.forward(net, params, test.x), test.y))
    print(f"after {args.epochs} epochs: train {loss} {float(history['train_loss'][-1]):.4f}, "
          f"test {loss} {float(history['test_loss'][-1]):.4f}, test rmse {test_mse ** 0.5:.4f} "
          f"(the noise's standard deviation: {args.noise:g})")
    grid = jnp.linspace(-1.0, 1.0, 201)[:, None]
    path = fn.visualization.fit_curve(
        args.out, train.x, train.y, grid, fn.model.forward(net, params, grid),
        test=(test.x, test.y), truth=(grid, jnp.sin(3 * grid)), x_label="x",
        y_label="y = sin(3x) + noise",
        title=f"{net}: test rmse {test_mse ** 0.5:.3f}, noise {args.noise:g}")
    curves = fn.visualization.curves({k: np.asarray(v) for k, v in history.items()},
                                     args.out.replace(".svg", "_curves.svg"), title=f"{net}")
    saved = fn.history.save(history, args.out.replace(".svg", "_history.json"))
    print(f"pictures written: {path} (the fit), {curves} (the loss per epoch); the history to "
          f"{saved}")
    return 0
