"""Training: the Clojure project's `nn.core` loop, compiled as one program.

Contract: `fit` is mini-batch SGD. Inside a single `jit`, a `lax.scan` over epochs runs, per
epoch, a fresh shuffle (its own key) and a `lax.scan` over the batches; no Python loop and no
host round trip per batch. The network, epochs and batch size are static (a new value compiles
once); keys, params, data and lr are arguments (a new value runs the same program). One line
per epoch is printed from inside the compiled loop unless `verbose=False`.
"""
from __future__ import annotations

import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from funcnn import data, metrics, model, rng
from funcnn.checks import InputError, InputTypeError, integer
from funcnn.data import Dataset


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or Inf. `.history` and `.params` hold what the run produced."""

    def __init__(self, message, params, history):
        super().__init__(message)
        self.params, self.history = params, history


def fit(key: rng.Key, net: model.MLP, params: model.Params, train: Dataset,
        test: Dataset | None = None, *, epochs: int = 20, lr=0.5, batch_size: int = 16,
        verbose: bool = True) -> tuple[model.Params, dict[str, jax.Array]]:
    """Train `params` with mini-batch SGD; return the new params and the per-epoch history.

    history: `train_loss`, `train_accuracy` (means over the epoch's batches, before each
    step), and with `test`, `test_loss`, `test_accuracy` (after the epoch): each `f32[epochs]`.
    A batch_size larger than the data means full-batch descent; the data are cast to the
    params' dtype. Raises `TrainingDiverged` if a loss turns NaN or Inf.
    Under an outer `jax.vmap` (one network per key) or `jax.jit` it prints nothing and cannot
    raise: check `jnp.isfinite(history["train_loss"])`, or use `fit_many` for ensembles.
    """
    key = rng.check_key(key)
    train, test, lr = _check_fit_args(net, params, train, test, epochs, lr, batch_size)
    traced = any(isinstance(v, jax.core.Tracer) for v in [key, *jax.tree.leaves(params)])
    _PROGRESS.start = time.perf_counter()
    new_params, history = _fit(key, params, train, test, lr, net=net, epochs=epochs,
                               batch_size=min(batch_size, train.x.shape[0]),
                               verbose=verbose and not traced, members=False)
    _raise_if_diverged(new_params, history, lr)
    return new_params, history


def fit_many(keys: jax.Array, net: model.MLP, params: model.Params, train: Dataset,
             test: Dataset | None = None, *, epochs: int = 20, lr=0.5, batch_size: int = 16,
             verbose: bool = True) -> tuple[model.Params, dict[str, jax.Array]]:
    """Train one network per key at once (an ensemble): `keys: key[m]`, params from
    `jax.vmap(lambda k: init(k, net))(init_keys)`. Histories come back `f32[m, epochs]`.
    Each epoch prints one line: the mean and range over the m networks."""
    if getattr(keys, "dtype", None) == jnp.uint32 and getattr(keys, "shape", ())[-1:] == (2,):
        keys = jax.random.wrap_key_data(keys)                  # legacy uint32[m, 2] keys
    if getattr(keys, "ndim", None) != 1 or not jax.dtypes.issubdtype(keys.dtype,
                                                                      jax.dtypes.prng_key):
        raise InputTypeError("keys must be a 1-D array of keys, e.g. jax.random.split("
                             f"jax.random.key(0), 16); got {getattr(keys, 'shape', keys)!r}")
    m = keys.shape[0]
    lead = {leaf.shape[0] if leaf.ndim else None for leaf in jax.tree.leaves(params)}
    if lead != {m}:
        raise InputError(f"params must hold {m} networks (a leading axis of {m} on every leaf, "
                         f"as jax.vmap(init) makes), got leading sizes {sorted(map(str, lead))}")
    member = jax.tree.map(lambda v: v[0], params)
    train, test, lr = _check_fit_args(net, member, train, test, epochs, lr, batch_size)
    _PROGRESS.start = time.perf_counter()
    new_params, history = _fit(keys, params, train, test, lr, net=net, epochs=epochs,
                               batch_size=min(batch_size, train.x.shape[0]),
                               verbose=verbose, members=True)
    _raise_if_diverged(new_params, history, lr)
    return new_params, history


def epoch_keys(key: rng.Key, epochs: int) -> jax.Array:
    """One key per epoch: every epoch shuffles the training rows differently."""
    return jax.random.split(key, epochs)


@partial(jax.jit, static_argnames=("net", "epochs", "batch_size", "verbose", "members"))
def _fit(key, params, train, test, lr, *, net, epochs, batch_size, verbose, members):
    n = train.x.shape[0]

    def batch_step(params, batch_rows):
        rows, w = batch_rows                                    # i32[batch_size], f32[batch_size]
        batch = Dataset(train.x[rows], train.y[rows])           # gather on device, no host trip
        loss, g, out = model.value_and_grads(net, params, batch, w)
        params = model.sgd(params, g, lr)                       # p <- p - lr dL/dp
        real = w.sum()                                          # rows that are not padding
        return params, (loss * real, metrics.accuracy(out, batch.y, w) * real)

    def train_epoch(params, key):
        rows, w = data.batches(key, n, batch_size, train.x.dtype)   # this epoch's shuffle
        params, (loss_sums, correct) = lax.scan(batch_step, params, (rows, w))
        history = {"train_loss": loss_sums.sum() / n, "train_accuracy": correct.sum() / n}
        if test is not None:                                    # evaluate after the epoch
            out = model.forward(net, params, test.x)
            history["test_loss"] = net.loss.fn(out, test.y, jnp.ones(test.x.shape[0], out.dtype))
            history["test_accuracy"] = metrics.accuracy(out, test.y)
        return params, history

    if members:                                                 # many networks, one program
        train_epoch = jax.vmap(train_epoch)
        keys = jax.vmap(epoch_keys, in_axes=(0, None), out_axes=1)(key, epochs)  # [epochs, m]
    else:
        keys = epoch_keys(key, epochs)                          # [epochs]

    # The keys enter the scan as raw data and are wrapped again inside: jax's key-reuse
    # checker (jax_debug_key_reuse) wrongly reports typed keys passed as scan inputs under vmap.
    impl = jax.random.key_impl(key)

    def epoch_step(params, inputs):
        i, key_data = inputs
        params, history = train_epoch(params, jax.random.wrap_key_data(key_data, impl=impl))
        if verbose:                                             # one host call per epoch
            jax.debug.callback(partial(_print_epoch, epochs, net.loss.name), i, history,
                               ordered=True)
        return params, history

    epochs_in = (jnp.arange(1, epochs + 1), jax.random.key_data(keys))
    params, history = lax.scan(epoch_step, params, epochs_in)
    if members:                                                 # [epochs, m] -> [m, epochs]
        history = jax.tree.map(lambda v: v.T, history)
    return params, history


# --- progress --------------------------------------------------------------------------------

class _Progress:
    start = 0.0   # set by fit just before the compiled run; read by the per-epoch callback


_PROGRESS = _Progress()


def _print_epoch(epochs, loss_name, i, history):
    """Host side of the per-epoch callback: one line, test numbers first as in the original."""
    parts = [f"epoch {int(i):>{len(str(epochs))}}/{epochs}"]
    order = ("test_accuracy", "test_loss", "train_loss", "train_accuracy")
    for name in (n for n in order if n in history):
        label = name.replace("_", " ").replace("loss", loss_name)
        v = history[name]
        if getattr(v, "ndim", 0):                                # many networks: mean [min, max]
            parts.append(f"{label} {v.mean():.4f} [{v.min():.4f}, {v.max():.4f}]")
        else:
            parts.append(f"{label} {float(v):.4f}")
    parts.append(f"({time.perf_counter() - _PROGRESS.start:.2f} s)")
    if not all(np.isfinite(np.asarray(v)).all() for v in history.values()):
        parts.append("<- NaN or Inf: training diverged; lower lr")
    print("  ".join(parts), flush=True)


# --- checks, in plain Python before any compilation ------------------------------------------

def _check_fit_args(net, params, train, test, epochs, lr, batch_size):
    model.check_params(net, params)
    dtype = jax.tree.leaves(params)[0].dtype
    if not jnp.issubdtype(dtype, jnp.floating):
        raise InputTypeError(f"params must be floating point, got {dtype}; make them with "
                             "funcnn.model.init(key, net)")
    model.check_batch(net, train, "train")
    if test is not None:
        model.check_batch(net, test, "test")
    integer("epochs", epochs, 1)
    integer("batch_size", batch_size, 1)
    model.check_lr(lr)
    if not isinstance(lr, jax.core.Tracer):     # a host scalar of the params' dtype: every lr
        lr = np.asarray(lr, dtype)              # has the same abstract type, so no recompile
    cast = lambda ds: Dataset(jnp.asarray(ds.x, dtype), jnp.asarray(ds.y, dtype))
    return cast(train), None if test is None else cast(test), lr


def _raise_if_diverged(params, history, lr) -> None:
    if any(isinstance(v, jax.core.Tracer) for v in history.values()):
        return                                  # traced by an outer jit/vmap: values unknown
    bad = np.stack([~np.isfinite(np.asarray(v)) for v in history.values()]).any(axis=0)
    if not bad.any():                           # bad: [epochs] or [members, epochs]
        return
    first = int(np.argmax(bad.reshape(-1, bad.shape[-1]).any(axis=0))) + 1
    raise TrainingDiverged(
        f"training diverged: the loss became NaN or Inf in epoch {first} (lr={float(lr):g}). "
        "Lower lr (by 10x, say) or check the data's scale; the partial history is on this "
        "error's .history", params, history)
