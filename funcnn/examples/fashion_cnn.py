"""Beyond the seeds: a convolutional network for Fashion-MNIST, built from `funcnn.layers`.

conv 3x3 (32) -> relu -> max-pool 2 -> conv 3x3 (64) -> BatchNorm -> relu -> max-pool 2 ->
flatten -> dropout 0.5 -> dense 128 (relu) -> dense 10, softmax cross-entropy; Adam (1e-3),
batch 128, every one of the 60,000 training images, the 10,000 test images after each epoch.
Each layer's gradient is written by hand (funcnn/layers/); each convolution is a matrix
product on its patches. `--narrow` halves the channels (16 and 32): 2x faster per epoch.
"""
import time

import jax
import numpy as np

import funcnn as fn

HELP = "beyond the seeds: a CNN on Fashion-MNIST (conv, pool, BatchNorm, dropout), Adam"
DESCRIPTION = __doc__.split("\n\n")[1].replace("\n", " ")
L, M = fn.layers, fn.math


def cnn(c1: int = 32, c2: int = 64, dropout: float = 0.5):
    """The network: two convolution blocks, then a dense head."""
    return fn.model.network(
        L.serial(L.Reshape((28, 28, 1)),
                 L.Conv2D(c1, (3, 3), padding="SAME", init=fn.model.he()), M.relu,
                 L.MaxPool2D((2, 2)),
                 L.Conv2D(c2, (3, 3), padding="SAME", init=fn.model.he()), L.BatchNorm(),
                 M.relu, L.MaxPool2D((2, 2)),
                 L.Flatten(), L.Dropout(dropout), L.Dense(128, M.relu, fn.model.he()),
                 L.Dense(10)),
        input_shape=(784,), loss=fn.losses.softmax_cross_entropy)


def add_arguments(p, positive_int, positive_float):
    p.add_argument("--epochs", type=positive_int, default=8, help="passes over the 60,000 "
                   "training images (default 8)")
    p.add_argument("--batch-size", type=positive_int, default=128)
    p.add_argument("--lr", type=positive_float, default=1e-3, help="Adam's learning rate")
    p.add_argument("--narrow", action="store_true",
                   help="16 and 32 channels instead of 32 and 64 (2x faster per epoch)")
    p.add_argument("--subset", type=positive_int, default=None,
                   help="train on the first N training images only (a quick look)")
    p.add_argument("--progress-every", type=int, default=100,
                   help="print a line every N steps within an epoch (0: only per epoch)")
    p.add_argument("--data", default=None, help="directory with the four IDX files "
                   "(default: $FUNCNN_DATA, /usr/share/datasets/fashion-mnist, the cache)")
    p.add_argument("--download", action="store_true",
                   help="fetch the files into ~/.cache/funcnn if they are not found")
    p.add_argument("--save", default=None, help="save the trained network and params here")
    return "images/fashion_cnn.svg"


def run(args) -> int:
    start = time.perf_counter()
    train, test = fn.data.fashion_mnist(args.data, download=args.download)
    if args.subset:
        train = fn.data.Dataset(train.x[:args.subset], train.y[:args.subset])
    net = cnn(16, 32) if args.narrow else cnn()
    k_init, k_fit = jax.random.split(fn.rng.key(args.seed))
    params = fn.model.init(k_init, net)
    optimizer = fn.optim.adam(args.lr)
    if not args.quiet:
        print(net.summary())
    print(f"{train.x.shape[0]:,} training and {test.x.shape[0]:,} test images, "
          f"{args.epochs} epochs, batch {args.batch_size}, {optimizer}")
    params, history = fn.train.fit(k_fit, net, params, train, test, epochs=args.epochs,
                                   batch_size=args.batch_size, optimizer=optimizer,
                                   verbose=not args.quiet,
                                   progress_every=0 if args.quiet else args.progress_every)
    trained = time.perf_counter() - start
    base = args.out.replace(".svg", "")
    logits = fn.model.forward(net, params, test.x)          # evaluation: running statistics
    accuracy = float(fn.metrics.accuracy(logits, test.y))
    predicted = np.asarray(fn.metrics.predict_class(logits))
    true = np.asarray(fn.metrics.predict_class(test.y))
    wrong = np.flatnonzero(predicted != true)[:32]
    names = fn.sources.FASHION_CLASSES
    title = f"CNN, {args.epochs} epochs"
    written = [
        fn.visualization.curves(history, f"{base}_curves.svg", title=title),
        fn.visualization.confusion_matrix(np.asarray(fn.metrics.confusion_matrix(logits, test.y)),
                                          names, f"{base}_confusion.svg",
                                          title=f"test accuracy {accuracy:.4f}"),
        fn.visualization.image_grid(np.asarray(test.x[wrong]), true[wrong], predicted[wrong],
                                    names, f"{base}_mistakes.svg",
                                    title=f"misclassified test images ({title})"),
        fn.visualization.filters(params[1]["w"], f"{base}_filters.svg",
                                 title="the first layer's learnt 3x3 filters"),
        fn.history.save(history, f"{base}_history.json"),
    ]
    if args.save:
        written.append(fn.io.save(args.save, params, net, metadata={"epochs": args.epochs}))
    print(f"test accuracy {accuracy:.4f} after {args.epochs} epochs "
          f"({trained:.0f} s: data, compile and training)")
    print("written: " + ", ".join(map(str, written)))
    return 0
