"""Seed 1, clj-RedNNTest: two Gaussian clusters, 2 -> 8 -> 2 sigmoid, MSE, mini-batch SGD."""
import time

import jax

import funcnn as fn

HELP = "the Clojure run: two Gaussian clusters, 2 -> 8 -> 2 sigmoid, MSE (the default)"
QUICK_COMPILE = True   # a 2-8-2 network trains in milliseconds: compile fast, not optimised
                       # (see funcnn.backend)
DESCRIPTION = ("The Clojure project's run: 400 points per class, 2 -> 8 -> 2 sigmoid, weights "
               "uniform in [-0.5, 0.5], MSE, lr 0.5, batch 16, 20 epochs, seed 1337.")


def add_arguments(p, positive_int, positive_float):
    p.add_argument("--epochs", type=positive_int, default=20,
                   help="passes over the training set (default 20)")
    p.add_argument("--lr", type=positive_float, default=0.5, help="learning rate (default 0.5)")
    p.add_argument("--batch-size", type=positive_int, default=16,
                   help="rows per gradient step (default 16)")
    p.add_argument("--points-per-class", type=positive_int, default=400,
                   help="points drawn per cluster (default 400)")
    return "images/decision_boundary.svg"


def run(args) -> int:
    t_start = time.perf_counter()
    k_data, k_split, k_init, k_fit = jax.random.split(fn.rng.key(args.seed), 4)
    ds = fn.data.gaussian_clusters(k_data, n_per_class=args.points_per_class)
    train, test = fn.data.split(k_split, ds, train_fraction=0.8)
    net = fn.model.mlp([2, 8, 2], hidden=fn.math.sigmoid, output=fn.math.sigmoid,
                       loss=fn.losses.mse, init=fn.model.uniform(0.5))
    params = fn.model.init(k_init, net)
    print(f"{net}: {train.x.shape[0]} training and {test.x.shape[0]} test points, "
          f"{plural(args.epochs, 'epoch')}, lr {args.lr}, batch {args.batch_size}")
    params, history = fn.train.fit(k_fit, net, params, train, test, epochs=args.epochs,
                                   lr=args.lr, batch_size=args.batch_size,
                                   verbose=not args.quiet)
    t_trained = time.perf_counter()
    path = fn.visualization.decision_boundary(net, params, ds, args.out)
    curves = fn.visualization.curves(history, args.out.replace(".svg", "_curves.svg"),
                                     title=f"{net}, lr {args.lr}, batch {args.batch_size}")
    saved = fn.history.save(history, args.out.replace(".svg", "_history.json"))
    t_done = time.perf_counter()
    print(f"test accuracy {float(history['test_accuracy'][-1]):.4f}, test mse "
          f"{float(history['test_loss'][-1]):.4f} after {plural(args.epochs, 'epoch')}")
    print(f"decision boundary written to {path}, loss and accuracy curves to {curves}, "
          f"the history to {saved}")
    print(f"time: data + compile + train {t_trained - t_start:.2f} s, "
          f"pictures {t_done - t_trained:.2f} s")
    return 0


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"
