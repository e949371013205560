"""Training: the Clojure project's `nn.core` loop, compiled as one program.

Contract: `fit` is mini-batch SGD. Inside a single `jit`, a `lax.scan` over epochs runs, per
epoch, a fresh shuffle (its own key) and a `lax.scan` over the batches; no Python loop and no
host round trip per batch. The network, epochs and batch size are static (a new value compiles
once); keys, params, data and lr are arguments (a new value runs the same program). One line
per epoch is printed from inside the compiled loop unless `verbose=False`.
"""
from __future__ import annotations

import math
import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from funcnn import data, metrics, model, rng
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
    A batch_size larger than the data means full-batch descent. Raises `TrainingDiverged`
    if a loss turns NaN or Inf. Under `jax.vmap` it trains one network per key (printing is
    then off: `fit_many` prints a summary line per epoch instead).
    """
    key = rng.check_key(key)
    train, test, lr = _check_fit_args(net, params, train, test, epochs, lr, batch_size)
    printing = verbose and not _batched(key, params)
    _PROGRESS.start = time.perf_counter()
    new_params, history = _fit(key, params, train, test, lr, net=net, epochs=epochs, members=False,
                               batch_size=min(batch_size, train.x.shape[0]), verbose=printing)
    _raise_if_diverged(new_params, history, lr)
    return new_params, history


def fit_many(keys: jax.Array, net: model.MLP, params: model.Params, train: Dataset,
             test: Dataset | None = None, *, epochs: int = 20, lr=0.5, batch_size: int = 16,
             verbose: bool = True) -> tuple[model.Params, dict[str, jax.Array]]:
    """Train one network per key at once (an ensemble): `keys: key[m]`, params from
    `jax.vmap(lambda k: init(k, net))(init_keys)`. Histories come back `f32[m, epochs]`.
    Each epoch prints one line: the mean and range over the m networks."""
    if getattr(keys, "ndim", None) != 1 or not jax.dtypes.issubdtype(keys.dtype,
                                                                      jax.dtypes.prng_key):
        raise TypeError("keys must be a 1-D array of keys, e.g. "
                        f"jax.random.split(jax.random.key(0), 16); got {getattr(keys, 'shape', keys)}")
    m = keys.shape[0]
    lead = {leaf.shape[0] if leaf.ndim else None for leaf in jax.tree.leaves(params)}
    if lead != {m}:
        raise ValueError(f"params must hold {m} networks (a leading axis of {m} on every leaf, as "
                         f"jax.vmap(init) makes), got leading sizes {sorted(map(str, lead))}")
    member = jax.tree.map(lambda v: v[0], params)
    train, test, lr = _check_fit_args(net, member, train, test, epochs, lr, batch_size)
    _PROGRESS.start = time.perf_counter()
    new_params, history = _fit(keys, params, train, test, lr, net=net, epochs=epochs,
                               members=True, batch_size=min(batch_size, train.x.shape[0]),
                               verbose=verbose)
    _raise_if_diverged(new_params, history, lr)
    return new_params, history


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

    def one_epoch(params, key):
        rows, w = data.batches(key, n, batch_size)              # a new shuffle every epoch
        params, (loss_sums, correct) = lax.scan(batch_step, params, (rows, w))
        history = {"train_loss": loss_sums.sum() / n, "train_accuracy": correct.sum() / n}
        if test is not None:                                    # evaluate after the epoch
            out = model.forward(net, params, test.x)
            history["test_loss"] = net.loss.fn(out, test.y, jnp.ones(test.x.shape[0], out.dtype))
            history["test_accuracy"] = metrics.accuracy(out, test.y)
        return params, history

    def epoch(params, inputs):
        i, key_data = inputs
        key = jax.random.wrap_key_data(key_data, impl=impl)
        step = jax.vmap(one_epoch) if members else one_epoch    # many networks: one program
        params, history = step(params, key)
        if verbose:                                             # one host call per epoch
            jax.debug.callback(partial(_print_epoch, epochs, net.loss.name), i, history,
                               ordered=True)
        return params, history

    keys = jax.vmap(lambda k: jax.random.split(k, epochs), out_axes=1)(key) if members \
        else jax.random.split(key, epochs)                       # one key per epoch (and member)
    # The keys enter the scan as raw data, wrapped again inside: jax's key-reuse checker
    # (jax_debug_key_reuse) wrongly reports typed keys passed as scan inputs under vmap.
    impl = jax.random.key_impl(key)
    params, history = lax.scan(epoch, params, (jnp.arange(1, epochs + 1),
                                               jax.random.key_data(keys)))
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
    print("  ".join(parts), flush=True)


# --- checks, in plain Python before any compilation ------------------------------------------

def _check_fit_args(net, params, train, test, epochs, lr, batch_size):
    model.check_params(net, params)
    data.check_dataset(train, "train")
    model.check_batch(net, train, "train")
    if test is not None:
        data.check_dataset(test, "test")
        model.check_batch(net, test, "test")
    for name, v in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"{name} must be an int, got {type(v).__name__} {v!r}")
        if v < 1:
            raise ValueError(f"{name} must be >= 1, got {v}")
    if not isinstance(lr, jax.core.Tracer):
        try:
            lr_value = float(lr)
        except (TypeError, ValueError):
            raise TypeError(f"lr must be a number, got {type(lr).__name__} {lr!r}") from None
        if not (math.isfinite(lr_value) and lr_value > 0):
            raise ValueError(f"lr (learning rate) must be finite and > 0, got {lr_value}; "
                             "try 0.5 for the Clojure net, 0.01-0.1 for larger ones")
    dtype = jax.tree.leaves(params)[0].dtype
    if not isinstance(lr, jax.core.Tracer):     # a host scalar of the params' dtype: every lr
        lr = np.asarray(lr, dtype)              # has the same abstract type, so no recompile
    return Dataset(*train), None if test is None else Dataset(*test), lr


def _batched(key, params) -> bool:
    """True when fit is being traced by jax.vmap (its arguments carry a batch dimension)."""
    return any(type(v).__name__ == "BatchTracer" for v in [key, *jax.tree.leaves(params)])


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
