"""Data: the Clojure project's `nn.data`. Synthetic sets drawn by hand, scaling, one-hot,
a keyed train/test split, and the per-epoch shuffle.

Contract: a `Dataset` is a pair of arrays, `x: f32[n, ...]` examples (features `f32[n, d]`, or
images `f32[n, h, w, c]`) and `y` labels, a row per example: class ids `int[n]`, one-hot rows
`f32[n, k]` (a 0/1 column for k = 1), multi-hot rows or real targets `f32[n, k]`
(`funcnn.labels`: `label_kind` names them, the network's loss says which it reads). It is a
NamedTuple, so it is a pytree: it passes through `jit`, `vmap` and `lax.scan` as it is. Every
draw takes a key. Text for a character-level model (`text`, `tiny_shakespeare`, `windows`) is
`funcnn.text`'s, re-exported here.
"""
from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from funcnn import backend, rng, sources
from funcnn.checks import InputError, InputTypeError, integer, number
from funcnn.labels import check_ids, describe, in_host_memory, label_kind  # noqa: F401
from funcnn.text import Text, text, tiny_shakespeare, windows  # noqa: F401


class Dataset(NamedTuple):
    x: jax.Array   # f32[n, ...] one example a row: f32[n, d] features, or f32[n, h, w, c] images
    y: jax.Array   # int[n] class ids, or f32[n, k]: one-hot, multi-hot or real rows

    def __repr__(self) -> str:
        return f"Dataset(x={describe(self.x)}, y={describe(self.y)})"


class Scale(NamedTuple):
    """Min-max scaling learnt from one array, to apply to others (a grid, new points)."""
    lo: jax.Array   # f32[1, d] per-feature minimum
    hi: jax.Array   # f32[1, d] per-feature maximum

    def __call__(self, x: jax.Array) -> jax.Array:
        span = jnp.where(self.hi > self.lo, self.hi - self.lo, 1.0)   # a constant feature -> 0
        return (x - self.lo) / span

    def invert(self, x: jax.Array) -> jax.Array:
        return self.lo + x * jnp.where(self.hi > self.lo, self.hi - self.lo, 1.0)


def minmax_scale(x: jax.Array) -> tuple[jax.Array, Scale]:
    """Scale each feature of `x: f32[n, d]` to [0, 1]; return the result and the `Scale` used."""
    scale = Scale(x.min(axis=0, keepdims=True), x.max(axis=0, keepdims=True))
    return scale(x), scale


def one_hot(labels: jax.Array, k: int, dtype=jnp.float32) -> jax.Array:
    """Class ids `int[n]` (or `int[n, t]`) in [0, k) -> `f32[n, k]` (`f32[n, t, k]`) rows with
    a single 1. An id out of range, negative or not an integer is refused (values on
    concrete arrays; under jit the dtype alone)."""
    k = integer("k (the number of classes)", k, 1)
    labels = np.asarray(labels) if isinstance(labels, (list, tuple)) else labels
    check_ids(labels, k, "labels")
    classes = jnp.arange(k).reshape(*(1,) * labels.ndim, k)
    return (labels[..., None] == classes).astype(dtype)


def box_muller(key: rng.Key, n: int, dtype=jnp.float32) -> jax.Array:
    """`n` standard normal draws made by hand from uniform ones (Box-Muller).

    With u1 in (0, 1] and u2 in [0, 1):  r = sqrt(-2 ln u1),  z0 = r cos(2 pi u2),
    z1 = r sin(2 pi u2) are two independent N(0, 1) draws.
    """
    k1, k2 = jax.random.split(rng.check_key(key))
    half = (n + 1) // 2
    u1 = 1.0 - rng.draw_uniform(k1, (half,), dtype=dtype)        # (0, 1]: ln u1 is finite
    u2 = rng.draw_uniform(k2, (half,), dtype=dtype)
    r = jnp.sqrt(-2.0 * jnp.log(u1))
    z = jnp.concatenate([r * jnp.cos(2 * jnp.pi * u2), r * jnp.sin(2 * jnp.pi * u2)])
    return z[:n]


def gaussian_clusters(key: rng.Key, n_per_class: int = 400,
                      centers=((2.0, 2.0), (5.0, 5.0)), std: float = 1.0) -> Dataset:
    """The Clojure data set: one Gaussian cluster per class, min-max scaled to [0, 1].

    Returns `Dataset(x: f32[k * n_per_class, d], y: f32[k * n_per_class, k] one-hot)`, the rows
    of class 0 first. `centers` has one point per class (k = len(centers) classes, d = its
    length); every cluster has the same `std`. Use `gaussian_clusters_raw` for unscaled points.
    """
    return _clusters_checked(key, n_per_class, centers, std, scaled=True)[0]


def gaussian_clusters_raw(key: rng.Key, n_per_class: int = 400,
                          centers=((2.0, 2.0), (5.0, 5.0)),
                          std: float = 1.0) -> tuple[Dataset, Scale]:
    """As `gaussian_clusters`, but returns the unscaled points and the `Scale` that maps them
    to [0, 1] (apply it to new points to feed them to a network trained on the scaled set)."""
    return _clusters_checked(key, n_per_class, centers, std, scaled=False)


def _clusters_checked(key, n_per_class, centers, std, scaled):
    key = rng.check_key(key)
    n_per_class = integer("n_per_class", n_per_class, 1)
    try:
        centers = tuple(tuple(float(v) for v in c) for c in centers)
    except (TypeError, ValueError):
        raise InputError(f"centers must be a list of points, like ((2, 2), (5, 5)); got "
                         f"{centers!r}") from None
    if len(centers) < 2 or len({len(c) for c in centers}) != 1:
        raise InputError(f"centers must be at least 2 points of one dimension, got {centers}")
    std = number("std", std, positive=True)
    return _gaussian_clusters(key, n_per_class, centers, std, scaled)


@partial(jax.jit, static_argnums=(1, 2, 3, 4))   # one compile, not one per array operation
def _gaussian_clusters(key, n_per_class, centers, std, scaled):
    c = jnp.asarray(centers, jnp.float32)                       # f32[k, d]
    k, d = c.shape
    z = box_muller(key, k * n_per_class * d).reshape(k, n_per_class, d)
    x = (c[:, None, :] + std * z).reshape(k * n_per_class, d)  # class i around centers[i]
    labels = jnp.repeat(jnp.arange(k), n_per_class)
    x_scaled, scale = minmax_scale(x)
    return Dataset(x_scaled if scaled else x, one_hot(labels, k)), scale


def circles(key: rng.Key, n: int = 500, factor: float = 0.5, noise: float = 0.05,
            one_hot_labels: bool = False) -> Dataset:
    """DotCSV's data: two concentric rings (scikit-learn's `make_circles`, written by hand).

    The outer ring (radius 1, class 0) gets n // 2 points, the inner ring (radius `factor`,
    class 1) the rest, evenly spaced in angle; then N(0, noise^2) is added to each coordinate.
    `y` is a 0/1 column `f32[n, 1]` (for a network with one output) unless `one_hot_labels`.
    """
    key = rng.check_key(key)
    n = integer("n", n, 2)
    factor = number("factor (inner radius / outer radius)", factor, lo=0.0, hi=1.0)
    if not number("noise (std of the added Gaussian)", noise) >= 0.0:
        raise InputError(f"noise (std of the added Gaussian) must be >= 0, got {noise}")
    return _circles(key, n, factor, float(noise), bool(one_hot_labels))


@partial(jax.jit, static_argnums=(1, 2, 3, 4))
def _circles(key, n, factor, noise, one_hot_labels):
    n_out = n // 2
    n_in = n - n_out
    t_out = 2 * jnp.pi * jnp.arange(n_out) / n_out
    t_in = 2 * jnp.pi * jnp.arange(n_in) / n_in
    ring = jnp.concatenate([
        jnp.stack([jnp.cos(t_out), jnp.sin(t_out)], axis=1),
        factor * jnp.stack([jnp.cos(t_in), jnp.sin(t_in)], axis=1)])   # f32[n, 2]
    x = ring + noise * box_muller(key, 2 * n).reshape(n, 2)
    labels = jnp.concatenate([jnp.zeros(n_out, jnp.int32), jnp.ones(n_in, jnp.int32)])
    y = one_hot(labels, 2) if one_hot_labels else labels[:, None].astype(jnp.float32)
    return Dataset(x.astype(jnp.float32), y)


def split(key: rng.Key, ds: Dataset, train_fraction: float = 0.8) -> tuple[Dataset, Dataset]:
    """Shuffle the rows with `key`, then cut: the first `round(n * train_fraction)` rows train,
    the rest test. Both sides must be non-empty."""
    key = rng.check_key(key)
    n = check_dataset(ds, "ds")
    train_fraction = number("train_fraction", train_fraction, lo=0.0, hi=1.0)
    n_train = int(round(n * train_fraction))
    if not 0 < n_train < n:
        raise InputError(f"train_fraction={train_fraction} leaves {n_train} training and "
                         f"{n - n_train} test rows out of {n}; both sides need at least one "
                         "row: use more data or a fraction nearer 0.5")
    return _split(key, Dataset(*ds), n_train)


@partial(jax.jit, static_argnums=2)
def _split(key, ds, n_train):
    order = jax.random.permutation(key, ds.x.shape[0])
    train_rows, test_rows = order[:n_train], order[n_train:]
    return Dataset(ds.x[train_rows], ds.y[train_rows]), Dataset(ds.x[test_rows], ds.y[test_rows])


SORTED_MAX_ROWS = 1024   # up to this many rows a shuffle sorts; past it, feistel_order (below)
FEISTEL_ROUNDS = 8       # 4 or 5 rounds of this network leave neighbours correlated (a test shows)


def shuffle(key: rng.Key, n: int) -> jax.Array:
    """A random order of `range(n)`, `i32[n]`.

    Up to `SORTED_MAX_ROWS` rows: the rows sorted by a random 32-bit key each, with each row's
    index riding in the key's low 10 bits, so one sort of one array does it (faster than
    sorting keys and indices side by side: docs/performance.md). Equal keys keep
    their order: about n^2 / 2^23 pairs per shuffle (0.05 at the Clojure run's 640 rows).
    Past that, each index is sent through a keyed bijection instead (`feistel_order`), a
    speed measure: a sort is slow on a CPU.
    """
    key, n = rng.check_key(key), integer("n", n, 1)
    if n > SORTED_MAX_ROWS:
        return feistel_order(key, n)
    bits = jax.random.bits(key, (n,), jnp.uint32)                # u32[n] random sort keys
    low = jnp.uint32(SORTED_MAX_ROWS - 1)                        # the low 10 bits: the index
    packed = (bits & ~low) | jnp.arange(n, dtype=jnp.uint32)
    return (lax.sort(packed) & low).astype(jnp.int32)


def shuffles(keys: jax.Array, n: int) -> jax.Array:
    """`shuffle(key, n)` for each of m keys at once, `i32[m, n]`: the same orders (fit_many's
    networks each shuffle their rows every epoch). Up to SORTED_MAX_ROWS rows the m sorts run
    side by side as one sorting network (`backend.sort_columns`; docs/performance.md)."""
    n = integer("n", n, 1)
    if n > SORTED_MAX_ROWS:
        return jax.vmap(lambda k: feistel_order(k, n))(keys)
    bits = jax.vmap(lambda k: jax.random.bits(k, (n,), jnp.uint32))(keys)   # as shuffle draws
    low = jnp.uint32(SORTED_MAX_ROWS - 1)
    packed = (bits & ~low) | jnp.arange(n, dtype=jnp.uint32)[None, :]
    size = 1 << (n - 1).bit_length()                             # a power of 2 >= n
    last = jnp.full((size - n, packed.shape[0]), jnp.iinfo(jnp.uint32).max, jnp.uint32)
    columns = backend.sort_columns(jnp.concatenate([packed.T, last]))   # u32[size, m]
    return (columns[:n].T & low).astype(jnp.int32)               # the padding sorts last


def _mix32(x):
    """murmur3's 32-bit finaliser: a bijection of u32 in which each input bit flips each
    output bit with probability about 1/2."""
    x = (x ^ (x >> 16)) * jnp.uint32(0x85EBCA6B)
    x = (x ^ (x >> 13)) * jnp.uint32(0xC2B2AE35)
    return x ^ (x >> 16)


def feistel_order(key, n, rounds=FEISTEL_ROUNDS):
    """`order[i] = P(i)` for a keyed permutation P of range(n), computed elementwise: the
    shuffle of more than SORTED_MAX_ROWS rows. Why: a sort is slow on a CPU, this elementwise
    bijection some 15x faster at 60,000 rows (docs/performance.md).

    A Feistel network splits a number below 2^(2h) (2^(2h) >= n) into two h-bit halves and
    `rounds` times maps (left, right) -> (right, left ^ F(right)), with F a keyed hash (each
    round its own key): every round, so the whole network, is a bijection of [0, 2^(2h)),
    whatever F is. An image >= n is sent through again until it lands below n ("cycle
    walking", Black & Rogaway 2002), which makes P a bijection of range(n). Fewer than 3 in 4
    numbers below 2^(2h) are >= n (8% at 60,000 rows), so a walk is a few steps on average.
    P is not drawn from all n! orders alike (its 32-bit round keys pick it), nor is it a
    cryptographic permutation; the tests check what training needs: every row lands in every
    part of the order equally often, and rows near each other do not stay near each other.
    """
    half = max(1, -(-(n - 1).bit_length() // 2))                  # h: 2^(2h) >= n
    mask = jnp.uint32((1 << half) - 1)
    round_keys = jax.random.bits(key, (rounds,), jnp.uint32)

    def network(i):
        left, right = i >> half, i & mask
        for k in round_keys:
            left, right = right, left ^ (_mix32(right ^ k) & mask)
        return (left << half) | right

    big = jnp.uint32(n)
    walk = lambda y: jnp.where(y >= big, network(y), y)            # only the strays move
    first = network(jnp.arange(n, dtype=jnp.uint32))
    return lax.while_loop(lambda y: jnp.any(y >= big), walk, first).astype(jnp.int32)


def batches(key: rng.Key, n: int, batch_size: int, dtype=jnp.float32,
            width: int | None = None, order: jax.Array | None = None
            ) -> tuple[jax.Array, jax.Array]:
    """One epoch's order: a random permutation of `range(n)` (`shuffle(key, n)`, or `order`
    where given) cut into batches.

    Returns `rows: i32[steps, width]` and `weights: f32[steps, width]`, with
    steps = ceil(n / batch_size) and width = batch_size unless given larger (so that a batch
    splits evenly over several devices). The last batch, and every batch past batch_size
    rows, is padded with row 0 at weight 0: every row is used exactly once with weight 1,
    and no batch has a new shape (no recompile).
    """
    n, batch_size = integer("n", n, 1), integer("batch_size", batch_size, 1)
    width = batch_size if width is None else integer("width", width, batch_size)
    steps = -(-n // batch_size)                                  # ceil(n / batch_size)
    pad = steps * batch_size - n
    order = shuffle(key, n) if order is None else order
    rows = jnp.concatenate([order, jnp.zeros(pad, order.dtype)]).reshape(steps, batch_size)
    weights = jnp.concatenate([jnp.ones(n, dtype), jnp.zeros(pad, dtype)])
    weights = weights.reshape(steps, batch_size)
    extra = ((0, 0), (0, width - batch_size))                    # columns of padding rows
    return jnp.pad(rows, extra), jnp.pad(weights, extra)


# --- real data: Fashion-MNIST and MNIST, from IDX files (funcnn.idx reads them) ------------

def fashion_mnist(path=None, download: bool = False) -> tuple[Dataset, Dataset]:
    """Fashion-MNIST as `(train, test)`: x f32[n, 784] in [0, 1], y f32[n, 10] one-hot
    (60,000 and 10,000 rows; class names in `funcnn.sources.FASHION_CLASSES`).

    Looked for in `path`, then $FUNCNN_DATA, /usr/share/datasets/fashion-mnist (Debian's
    `dataset-fashion-mnist`), then ~/.cache/funcnn/fashion-mnist; `download=True` fetches the
    files there, checked by SHA-256."""
    return _as_datasets(sources.load_fashion_mnist(path, download=download))


def mnist(path) -> tuple[Dataset, Dataset]:
    """The digits MNIST from a directory holding its four IDX files, as `fashion_mnist`."""
    return _as_datasets(sources.load_mnist(path))


def _as_datasets(arrays) -> tuple[Dataset, Dataset]:
    x_train, y_train, x_test, y_test = arrays                    # u8[n, 28, 28], u8[n]
    def prepare(x, labels):                                      # pixels / 255, flattened
        x = jnp.asarray(x.reshape(len(x), -1), jnp.float32) / 255.0
        return Dataset(x, one_hot(jnp.asarray(labels, jnp.int32), 10))
    return prepare(x_train, y_train), prepare(x_test, y_test)


# --- checks, in plain Python before any tracing --------------------------------------------

def as_dataset(ds, name: str = "ds") -> Dataset:
    """`ds` as a Dataset: a Dataset as it is, a plain (x, y) pair (a tuple or list of two)
    made one; anything else refused."""
    if isinstance(ds, Dataset):
        return ds
    if isinstance(ds, (tuple, list)) and len(ds) == 2:
        return Dataset(*ds)
    raise InputTypeError(f"{name} must be a Dataset(x, y) or an (x, y) pair, got "
                         f"{type(ds).__name__}; build one with funcnn.data.Dataset(x, y)")


def check_real(v, name: str = "x") -> None:
    """Raise unless the array `v` holds real numbers: float (bfloat16 too), int or bool."""
    dtype = getattr(v, "dtype", None)
    if not (dtype == np.bool_ or jnp.issubdtype(dtype, jnp.integer)
            or jnp.issubdtype(dtype, jnp.floating)):
        raise InputTypeError(f"{name} must hold real numbers (float, int or bool), got dtype "
                             f"{dtype}; convert it, e.g. {name}.astype(np.float32) (strings: "
                             "parse them to numbers first; complex: take .real or abs)")


def check_finite(x, name: str = "x") -> None:
    """Raise if a concrete `x` holds NaN or Inf, naming the first such row (traced: nothing
    to look at, so nothing is checked)."""
    if isinstance(x, jax.core.Tracer):
        return
    if in_host_memory(x):
        v = np.asarray(x).reshape(x.shape[0], -1)
        with np.errstate(over="ignore", invalid="ignore"):
            if np.isfinite(v.sum()):                     # one cheap pass when all is well
                return
        bad = ~np.isfinite(v).all(axis=1)
    else:
        with jax.ensure_compile_time_eval():
            bad = jax.device_get(~jnp.isfinite(jnp.asarray(x).reshape(x.shape[0], -1)).all(1))
    if bad.any():
        raise InputError(f"{name} holds NaN or Inf (first in row {int(np.argmax(bad))}); a "
                         "network's output for it would be NaN: clean or drop those rows")


def check_dataset(ds, name: str = "ds") -> int:
    """Check that `ds` is a usable Dataset; return its row count n.

    Shapes are always checked; values (finite) only on concrete arrays, so the check also
    runs inside `jit`/`vmap` where it looks at shapes alone. Labels of any kind pass (a row
    per example); whether they fit a loss is `funcnn.labels.check_labels`'s question (asked
    by `funcnn.model.check_batch`). Values are checked where the data live: in host memory
    (NumPy, or JAX on the CPU: a view) by NumPy, with nothing to compile; on a GPU, or spread
    over several hosts, by one compiled reduction on the data's devices (two numbers come
    back, never the data).
    """
    if not (isinstance(ds, tuple) and len(ds) == 2):
        raise InputTypeError(f"{name} must be a Dataset(x, y), got {type(ds).__name__}; "
                        "build one with funcnn.data.Dataset(x, y)")
    x, y = ds
    if getattr(x, "ndim", 0) < 2:
        raise InputError(f"{name}.x must be an array of at least 2-D [rows, ...] (one example "
                         f"a row: [n, d] or [n, h, w, c]), got {describe(x)}; reshape it, "
                         "e.g. x.reshape(len(x), -1)")
    if getattr(y, "ndim", 0) < 1:
        raise InputError(f"{name}.y must be an array with a row per example (class ids [n], "
                         f"rows [n, k]), got {describe(y)}")
    if x.shape[0] != y.shape[0]:
        raise InputError(f"{name}.x has {x.shape[0]} rows but {name}.y has {y.shape[0]}; "
                         "every example needs one row in each")
    if x.shape[0] == 0:
        raise InputError(f"{name} is empty (0 rows); it needs at least one example")
    check_real(x, f"{name}.x")
    check_real(y, f"{name}.y")
    if isinstance(x, jax.core.Tracer) or isinstance(y, jax.core.Tracer):
        return x.shape[0]                         # traced: values unknown, shapes checked
    if in_host_memory(x) and in_host_memory(y):
        found = _bad_rows(np, np.asarray(x), np.asarray(y))      # a view, not a copy
    else:
        with jax.ensure_compile_time_eval():      # concrete even under an outer vmap or jit
            found = jax.device_get(_bad_rows_on_device(jnp.asarray(x), jnp.asarray(y)))
    bad_x, bad_y = (int(v) for v in found)
    if bad_x >= 0:
        raise InputError(f"{name}.x holds NaN or Inf (first in row {bad_x}); clean or drop "
                         "those rows before training")
    if bad_y >= 0:
        raise InputError(f"{name}.y holds NaN or Inf (first in row {bad_y}); labels and "
                         "targets must be finite: clean or drop those rows")
    return x.shape[0]


def _bad_rows(xp, x, y):
    """(first row of x with a NaN or Inf, first row of y with one), -1 where none; `xp` is
    NumPy or jax.numpy, the same code for both."""
    def first(v):
        v = v.reshape(v.shape[0], -1)
        with np.errstate(over="ignore", invalid="ignore"):   # NaN or Inf makes the sum NaN
            if xp is np and np.isfinite(v.sum()):            # or Inf: one cheap pass when
                return -1                                    # all is well
        bad = ~xp.isfinite(v).all(axis=1)
        return xp.where(bad.any(), xp.argmax(bad), -1)
    return first(x), first(y)


_bad_rows_on_device = jax.jit(partial(_bad_rows, jnp))     # one reduction, where the data are
