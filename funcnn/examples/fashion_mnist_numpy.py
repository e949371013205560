"""Seed 2, the NumPy Fashion-MNIST network: 784 -> 128 (ReLU) -> 10 (softmax).

The seed's recipe: weights randn / sqrt(fan_in), biases 0; cross-entropy plus L2 0.001 on the
weights; full-batch gradient descent, 50 epochs, lr 0.01; the first 50,000 training images
train, the last 10,000 validate. With 50 full-batch steps at lr 0.01 it barely learns, as the
seed does. `--recipe sound`: Adam (lr 1e-3), mini-batches of 128, 25 epochs.
(The seed's notebook says Fashion-MNIST but loads the digits; this one is Fashion-MNIST.)
"""
import jax
import numpy as np

import funcnn as fn

HELP = "seed 2: Fashion-MNIST, 784 -> 128 -> 10, the NumPy recipe, then a sound one"
DESCRIPTION = __doc__.split("\n\n")[1].replace("\n", " ")
RECIPES = {   # epochs, batch size (None: full batch), optimizer
    "seed": (50, None, fn.optim.weight_decay(fn.optim.sgd(0.01), 0.001)),
    "sound": (25, 128, fn.optim.adam(1e-3)),
}


def add_arguments(p, positive_int, positive_float):
    p.add_argument("--recipe", choices=sorted(RECIPES), default="seed",
                   help="seed: full batch, 50 epochs, lr 0.01, L2 0.001; sound: Adam, batch 128")
    p.add_argument("--epochs", type=positive_int, default=None, help="override the recipe's")
    p.add_argument("--subset", type=positive_int, default=None,
                   help="train on the first N training images only (a quick look)")
    p.add_argument("--data", default=None, help="directory with the four IDX files "
                   "(default: $FUNCNN_DATA, /usr/share/datasets/fashion-mnist, the cache)")
    p.add_argument("--download", action="store_true",
                   help="fetch the files into ~/.cache/funcnn if they are not found")
    p.add_argument("--save", default=None, help="save the trained network and params here "
                   "(an .npz checkpoint, written atomically)")
    p.add_argument("--load", default=None, help="evaluate a saved checkpoint on the test set "
                   "instead of training")
    return "images/fashion_mnist.svg"


def run(args) -> int:
    epochs, batch_size, optimizer = RECIPES[args.recipe]
    epochs = args.epochs or epochs
    full, test = fn.data.fashion_mnist(args.data, download=args.download)
    train = fn.data.Dataset(full.x[:50_000], full.y[:50_000])     # the seed's split, in order
    val = fn.data.Dataset(full.x[50_000:], full.y[50_000:])
    if args.subset:
        train = fn.data.Dataset(train.x[:args.subset], train.y[:args.subset])
    if args.load:                                               # evaluate a checkpoint
        net, params = fn.io.load_network(args.load), fn.io.load(args.load)
        print(f"{net} loaded from {args.load}")
        return _evaluate(net, params, test, args.out, f"{net}, loaded")
    k_init, k_fit = jax.random.split(fn.rng.key(args.seed))
    net = fn.model.mlp([784, 128, 10], hidden=fn.math.relu, output=fn.math.identity,
                       loss=fn.losses.softmax_cross_entropy, init=fn.model.lecun())
    n = train.x.shape[0]
    print(f"{net}, recipe {args.recipe}: {n} training and {val.x.shape[0]} validation "
          f"images, {epochs} epochs, batch {batch_size or n}, {optimizer}")
    params, history = fn.train.fit(k_fit, net, fn.model.init(k_init, net), train, val,
                                   epochs=epochs, batch_size=batch_size or n,
                                   optimizer=optimizer, verbose=not args.quiet)
    curves = fn.visualization.curves(
        {"train_loss": history["train_loss"], "val_loss": history["test_loss"],
         "train_accuracy": history["train_accuracy"], "val_accuracy": history["test_accuracy"]},
        args.out.replace(".svg", "_curves.svg"), title=f"{net}, recipe {args.recipe}")
    saved = fn.history.save(history, args.out.replace(".svg", "_history.json"))
    print(f"loss and accuracy curves written to {curves}, the history to {saved}")
    if args.save:
        saved = fn.io.save(args.save, params, net, metadata={"recipe": args.recipe,
                                                             "epochs": epochs})
        print(f"checkpoint written to {saved}")
    return _evaluate(net, params, test, args.out, f"{net}, recipe {args.recipe}")


def _evaluate(net, params, test, out, title) -> int:
    # the test set, seen once at the end
    logits = fn.model.forward(net, params, test.x)
    accuracy = float(fn.metrics.accuracy(logits, test.y))
    cm = np.asarray(fn.metrics.confusion_matrix(logits, test.y))
    predicted = np.asarray(fn.metrics.predict_class(logits))
    true = np.asarray(fn.metrics.predict_class(test.y))
    wrong = np.flatnonzero(predicted != true)[:32]
    names = fn.sources.FASHION_CLASSES
    base = out.replace(".svg", "")
    confusion = fn.visualization.confusion_matrix(cm, names, f"{base}_confusion.svg",
                                                  title=f"test accuracy {accuracy:.4f}")
    grid = fn.visualization.image_grid(np.asarray(test.x[wrong]).reshape(-1, 28, 28),
                                       true[wrong], predicted[wrong], names,
                                       f"{base}_mistakes.svg",
                                       title=f"misclassified test images ({title})")
    print(f"test accuracy {accuracy:.4f} (10,000 test images)")
    print(f"pictures written: {confusion}, {grid}")
    return 0
