"""`python -m funcnn` (or `funcnn`): the Clojure run, end to end, and the other examples.

    python -m funcnn                  # = python -m funcnn clusters: the Clojure network
    python -m funcnn clusters --epochs 40 --lr 0.3 --out images/run2.svg
    python -m funcnn circles          # DotCSV's rings, [2, 4, 8, 1] sigmoid

The flow is the original's: data -> model -> training with metrics -> picture.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

COMMANDS = ("clusters", "circles")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, commands = _parser()
    if argv in (["-h"], ["--help"]):               # the commands, then the default's flags
        print(parser.format_help())
        print(commands["clusters"].format_help())
        return 0
    if not argv or (argv[0] not in COMMANDS and argv[0].startswith("-")):
        argv = ["clusters", *argv]                 # no command: the Clojure run
    args = parser.parse_args(argv)
    if not args.no_cache:
        _use_compilation_cache()
    from funcnn.checks import InputError, InputTypeError
    from funcnn.train import TrainingDiverged
    try:
        return args.run(args)
    except (InputError, InputTypeError, OSError) as e:   # bad input or an unwritable --out
        print(f"funcnn: error: {e}", file=sys.stderr)
        return 2
    except TrainingDiverged as e:
        print(f"funcnn: {e}", file=sys.stderr)
        return 1


def clusters(args) -> int:
    """The Clojure project's run: seed 1337, two Gaussian clusters, 2 -> 8 -> 2 sigmoid, MSE."""
    import jax
    import funcnn as fn

    t_start = time.perf_counter()
    k_data, k_split, k_init, k_fit = jax.random.split(fn.rng.key(args.seed), 4)
    ds = fn.data.gaussian_clusters(k_data, n_per_class=args.points_per_class)
    train, test = fn.data.split(k_split, ds, train_fraction=0.8)
    net = fn.model.mlp([2, 8, 2], hidden=fn.math.sigmoid, output=fn.math.sigmoid,
                       loss=fn.losses.mse, init=fn.model.uniform(0.5))
    params = fn.model.init(k_init, net)
    print(f"{net}: {train.x.shape[0]} training and {test.x.shape[0]} test points, "
          f"{_plural(args.epochs, 'epoch')}, lr {args.lr}, batch {args.batch_size}")
    params, history = fn.train.fit(k_fit, net, params, train, test, epochs=args.epochs,
                                   lr=args.lr, batch_size=args.batch_size,
                                   verbose=not args.quiet)
    t_trained = time.perf_counter()
    path = fn.visualization.decision_boundary(net, params, ds, args.out)
    t_done = time.perf_counter()
    print(f"test accuracy {float(history['test_accuracy'][-1]):.4f}, test mse "
          f"{float(history['test_loss'][-1]):.4f} after {_plural(args.epochs, 'epoch')}")
    print(f"decision boundary written to {path}")
    print(f"time: data + compile + train {t_trained - t_start:.2f} s, "
          f"picture {t_done - t_trained:.2f} s")
    return 0


def circles(args) -> int:
    """DotCSV's rings: [2, 4, 8, 1] sigmoid, MSE, trained by full-batch descent."""
    import jax
    import funcnn as fn

    k_data, k_split, k_init, k_fit = jax.random.split(fn.rng.key(args.seed), 4)
    ds = fn.data.circles(k_data, n=args.points, factor=0.5, noise=0.05)
    train, test = fn.data.split(k_split, ds, train_fraction=0.8)
    net = fn.model.mlp([2, 4, 8, 1], hidden=fn.math.sigmoid, output=fn.math.sigmoid,
                       loss=fn.losses.mse, init=fn.model.uniform(1.0))
    params = fn.model.init(k_init, net)
    print(f"{net}: {train.x.shape[0]} training and {test.x.shape[0]} test points")
    params, history = fn.train.fit(k_fit, net, params, train, test, epochs=args.epochs,
                                   lr=args.lr, batch_size=args.batch_size,
                                   verbose=not args.quiet)
    path = fn.visualization.decision_boundary(net, params, ds, args.out)
    print(f"test accuracy {float(history['test_accuracy'][-1]):.4f} after "
          f"{_plural(args.epochs, 'epoch')}")
    print(f"decision boundary written to {path}")
    return 0


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = argparse.ArgumentParser(
        prog="python -m funcnn",
        description="funcnn: neural networks as pure functions on JAX. With no command, "
                    "runs 'clusters', the Clojure network, end to end.")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    c = sub.add_parser("clusters", help="the Clojure run: two Gaussian clusters, 2 -> 8 -> 2 "
                                        "sigmoid, MSE, mini-batch SGD (the default)",
                       description="The Clojure project's run: 400 points per class, "
                                   "2 -> 8 -> 2 sigmoid, weights uniform in [-0.5, 0.5], MSE, "
                                   "lr 0.5, batch 16, 20 epochs, seed 1337.")
    c.add_argument("--epochs", type=_positive_int, default=20, help="passes over the training "
                   "set (default 20)")
    c.add_argument("--lr", type=_positive_float, default=0.5, help="learning rate (default 0.5)")
    c.add_argument("--batch-size", type=_positive_int, default=16, help="rows per gradient "
                   "step (default 16)")
    c.add_argument("--points-per-class", type=_positive_int, default=400, help="points drawn "
                   "per cluster (default 400)")
    _common(c, "images/decision_boundary.svg")
    c.set_defaults(run=clusters)

    r = sub.add_parser("circles", help="DotCSV's two rings, [2, 4, 8, 1] sigmoid, MSE",
                       description="Two concentric rings (n 500, factor 0.5, noise 0.05), "
                                   "[2, 4, 8, 1] sigmoid, uniform [-1, 1] init, MSE.")
    r.add_argument("--epochs", type=_positive_int, default=300, help="default 300")
    r.add_argument("--lr", type=_positive_float, default=1.0, help="default 1.0")
    r.add_argument("--batch-size", type=_positive_int, default=16, help="default 16")
    r.add_argument("--points", type=_positive_int, default=500, help="default 500")
    _common(r, "images/circles.svg")
    r.set_defaults(run=circles)
    return parser, {"clusters": c, "circles": r}


def _common(p: argparse.ArgumentParser, out: str) -> None:
    p.add_argument("--seed", type=_seed, default=1337, help="random seed (default 1337)")
    p.add_argument("--out", default=out, help=f"where to write the SVG picture (default {out})")
    p.add_argument("--quiet", action="store_true", help="no line per epoch")
    p.add_argument("--no-cache", action="store_true", help="do not keep compiled programs in "
                   "~/.cache/funcnn (the cache makes the second run start faster)")


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def _seed(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 0 <= v < 2**63:
        raise argparse.ArgumentTypeError(f"must be between 0 and 2**63 - 1, got {v}")
    return v


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (v > 0 and v < float("inf")):
        raise argparse.ArgumentTypeError(f"must be finite and > 0, got {text}")
    return v


def _use_compilation_cache() -> None:
    """Keep compiled programs on disk: XLA compiling is most of a first run's time."""
    import jax
    cache = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                         "funcnn", "xla")
    try:
        os.makedirs(cache, exist_ok=True)
    except OSError:
        return                                     # read-only home: run without a cache
    jax.config.update("jax_compilation_cache_dir", cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


if __name__ == "__main__":
    sys.exit(main())
