"""Training: the Clojure project's `nn.core` loop, compiled as one program.

Contract: `fit` is mini-batch SGD. Inside a single `jit`, a `lax.scan` over epochs runs, per
epoch, a fresh shuffle (its own key) and a `lax.scan` over the batches; no Python loop and no
host round trip per batch. The network, epochs and batch size are static (a new value compiles
once); keys, params, data and lr are arguments (a new value runs the same program). One line
per epoch (or every `verbose` epochs, if an int) is printed from inside the compiled loop
unless `verbose=False`. Every loop here trains with `train_step`: backprop by hand, the
optimizer's step, then BatchNorm's running statistics; the carry is (params, optimizer
state), and a network with Dropout gets a key per step, split off its epoch's key.
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from funcnn import backend, data, metrics, model, optim, parallel, rng
from funcnn import history as runlog
from funcnn.checks import InputError, InputTypeError, integer
from funcnn.data import Dataset


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or Inf. `.history` and `.params` hold what the run produced."""

    def __init__(self, message, params, history):
        super().__init__(message)
        self.params, self.history = params, history


def fit(key: rng.Key, net, params: model.Params, train: Dataset,
        test: Dataset | None = None, *, epochs: int = 20, lr=None, batch_size: int = 16,
        optimizer=None, probe=None, mesh=None, verbose: bool | int = True,
        progress_every: int = 0, state=None, start_epoch: int = 0,
        return_state: bool = False, patience: int | None = None, monitor: str | None = None,
        min_delta: float = 0.0):
    """Train `params` with mini-batch SGD; return the new params and the per-epoch history.

    Plain SGD with `lr` (default 0.5) unless `optimizer` is given (`funcnn.optim.adam(1e-3)`,
    ...; it carries its own learning rate). `probe`, a function of the params (a module-level
    function: it is a static argument), is evaluated after every epoch inside the compiled
    loop; its results come back stacked in `history["probe"]` (snapshots of a boundary, say).
    `mesh`, a 1-D `jax.sharding.Mesh`, trains data-parallel: each batch is split over the
    mesh's devices along its rows (padded with weight-0 rows to a multiple of the device
    count), the params are replicated, and XLA inserts the all-reduce of the gradients.

    Training mode throughout: dropout draws a new mask every step (from a key split off the
    epoch's key), BatchNorm normalises with the batch's statistics and its running statistics
    follow them after every step (no optimizer moves them). Evaluation of `test` after each
    epoch uses the running statistics and no dropout.

    history: `train_loss`, `train_accuracy` (means over the epoch's batches, before each
    step), and with `test`, `test_loss`, `test_accuracy` (after the epoch): each `f32[epochs]`.
    Accuracy is kept for class labels (integer ids or one-hot rows) only: a regression's
    (real targets) or a multi-label run's history has the losses alone.
    `funcnn.history.save(history, "run.json")` (or `.csv`) writes it to a file.

    Early stopping: `patience=k` stops when the monitored entry (`monitor`, by default
    "test_loss"; an accuracy is maximised, a loss minimised) has not improved by more than
    `min_delta` for k epochs, and returns the params of the best epoch. The run stays one
    compiled program: the epochs after the stop are skipped by a `lax.cond` (they compute
    nothing) and cut from the history, which gains `best_epoch` and `epochs_run`. With
    `return_state`, the state is the optimizer's after the last epoch run.
    `progress_every=N` also prints a line every N steps within an epoch (for long epochs).
    To go on where a run stopped: `return_state=True` returns (params, history, optimizer
    state); pass that state back with `state=` and `start_epoch=` the epochs already run, and
    the same `key`: the two calls give bitwise the same params as one call of all the epochs.
    A batch_size larger than the data means full-batch descent; the data are cast to the
    params' dtype. Raises `TrainingDiverged` if a loss turns NaN or Inf.
    Under an outer `jax.vmap` (one network per key) or `jax.jit` it prints nothing and cannot
    raise: check `jnp.isfinite(history["train_loss"])`, or use `fit_many` for ensembles.
    """
    key = rng.check_key(key)
    train, test, lr = _check_fit_args(net, params, train, test, epochs, lr, batch_size,
                                      optimizer, probe)
    _check_batches(net, train.x.shape[0], batch_size)
    mesh = parallel.check_mesh(mesh)
    if mesh is not None:                        # row-split data onto the mesh as it is
        train = parallel.place(train, mesh)
        test = None if test is None else parallel.place(test, mesh)
    start_epoch = integer("start_epoch", start_epoch, 0)
    if start_epoch and not jax.config.jax_threefry_partitionable:
        raise InputError("start_epoch needs jax_threefry_partitionable on (JAX's default): only "
                         "then are the first keys of split(key, m) those of split(key, k), so "
                         "a resumed run draws the epochs' keys of one long run")
    state = _check_state(optimizer, params, state)
    classes = _classes(train)
    patience, monitor, min_delta = runlog.check_patience(
        patience, monitor, _names(classes, test is not None), min_delta)
    traced = any(isinstance(v, jax.core.Tracer) for v in [key, *jax.tree.leaves(params)])
    every = 0 if traced else runlog.every(verbose)
    new_params, history, state, stop = _fit(
        key, params, state, train, test, lr, runlog.clock(), net=net, epochs=epochs,
        start_epoch=start_epoch, batch_size=min(batch_size, train.x.shape[0]),
        optimizer=optimizer, probe=probe, mesh=mesh, verbose=every, ensemble=False,
        progress_every=integer("progress_every", progress_every, 0) if every else 0,
        classes=classes, patience=patience, monitor=monitor, min_delta=min_delta)
    if stop is not None and traced:             # under an outer jit/vmap: every epoch kept
        new_params, history = stop.params, {**history, "best_epoch": stop.epoch}  # (NaN after)
    elif stop is not None:
        new_params, history = _best(stop, history, start_epoch, epochs, patience, monitor,
                                    every)
    _raise_if_diverged(new_params, history, lr)
    return (new_params, history, state) if return_state else (new_params, history)


def _classes(train: Dataset) -> bool:
    """Do the labels name classes (integer ids, one-hot rows), so that accuracy means something?"""
    return data.label_kind(train.y) in ("ids", "one-hot")


def _names(classes: bool, has_test: bool) -> tuple[str, ...]:
    """The entries of a run's history (before a probe's)."""
    names = ("train_loss", "train_accuracy") if classes else ("train_loss",)
    return names + tuple(n.replace("train", "test") for n in names) * has_test


def _best(stop, history, start_epoch, epochs, patience, monitor, every):
    """After an early-stopping run: the best epoch's params and the history of the epochs
    that ran, with `best_epoch` and `epochs_run`; a line says what happened."""
    best = int(stop.epoch)
    ran = min(epochs, max(best - start_epoch, 0) + patience)
    history = {k: v[:ran] for k, v in history.items()}
    history["best_epoch"], history["epochs_run"] = best, ran
    if every:
        value = f"{monitor} {float(history[monitor][best - start_epoch - 1]):.4f}" if best else \
            f"no finite {monitor}"
        skipped = (f"; {monitor} had not improved for {patience} epochs, so epochs "
                   f"{start_epoch + ran + 1}-{start_epoch + epochs} were skipped"
                   if ran < epochs else "")
        print(f"best epoch {best} ({value}): its params are returned{skipped}", flush=True)
    return stop.params, history


def fit_many(keys: jax.Array, net, params: model.Params, train: Dataset,
             test: Dataset | None = None, *, epochs: int = 20, lr=None, batch_size: int = 16,
             optimizer=None, probe=None, mesh=None,
             verbose: bool | int = True) -> tuple[model.Params, dict[str, jax.Array]]:
    """Train one network per key at once (an ensemble): `keys: key[m]`, params from
    `jax.vmap(lambda k: init(k, net))(init_keys)`. Histories come back `f32[m, epochs]`.
    Each epoch prints one line: the mean and range over the m networks.

    `mesh`, a 1-D `jax.sharding.Mesh`, splits the networks over its devices (m a multiple of
    its size): each device trains its share and nothing passes between them, so the numbers
    are those of one device. On a CPU, `jax.config.update("jax_num_cpu_devices", cores)` at
    start-up makes one device per core: one device's tiny steps leave the other cores idle.
    """
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
    train, test, lr = _check_fit_args(net, member, train, test, epochs, lr, batch_size,
                                      optimizer, probe)
    _check_batches(net, train.x.shape[0], batch_size)
    mesh = parallel.check_mesh(mesh)
    if mesh is not None:                        # each device trains its share of networks
        keys, params, train, test = parallel.split_networks(mesh, keys, params, train, test)
    state = () if optimizer is None else jax.vmap(optimizer.init)(params)
    new_params, history, _, _ = _fit(keys, params, state, train, test, lr, runlog.clock(),
                                     net=net, epochs=epochs, start_epoch=0,
                                     batch_size=min(batch_size, train.x.shape[0]),
                                     optimizer=optimizer, probe=probe, mesh=mesh,
                                     verbose=runlog.every(verbose), ensemble=True,
                                     progress_every=0, classes=_classes(train))
    _raise_if_diverged(new_params, history, lr)
    return new_params, history


def epoch_keys(key: rng.Key, epochs: int) -> jax.Array:
    """One key per epoch: every epoch shuffles the training rows differently."""
    return jax.random.split(key, epochs)


@partial(jax.jit, static_argnames=("net", "epochs", "start_epoch", "batch_size", "optimizer",
                                   "probe", "mesh", "verbose", "ensemble", "progress_every",
                                   "classes", "patience", "monitor", "min_delta"))
def _fit(key, params, state, train, test, lr, clock, *, net, epochs, start_epoch, batch_size,
         optimizer, probe, mesh, verbose, ensemble, progress_every, classes, patience=None,
         monitor=None, min_delta=0.0):
    n = train.x.shape[0]
    devices = 1 if mesh is None else mesh.size
    padded = -(-batch_size // devices) * devices                # rows per batch, padded
    full = padded == n                                           # full-batch descent
    steps = 1 if full else -(-n // batch_size)
    dropout = net.layer.needs_key                               # a key per step, for masks
    impl = jax.random.key_impl(key)

    def batch_step(carry, inputs):
        params, state = carry                                   # state: the optimizer's
        step, done, rows, w, key_data = inputs                  # i32[padded], f32[padded]
        key = None if key_data is None else backend.key_from_scan(key_data, impl)
        batch = train if full else Dataset(train.x[rows], train.y[rows])   # gather on device
        pieces = None                                           # pieces.step_pieces decides
        if mesh is not None and not ensemble:                   # rows split over the devices
            batch, w, params = parallel.split_batch(mesh, batch, w, params)
            pieces = 1                                          # (each device's rows whole)
        params, state, loss, out = train_step(net, optimizer, lr, params, state, batch, w, key,
                                              pieces)
        n_rows = w.sum()                                        # rows that are not padding
        if progress_every and not ensemble:                     # a line every N steps
            lax.cond(step % progress_every == 0, lambda: jax.debug.callback(
                partial(runlog.print_step, steps, epochs * steps, net.loss.name), step, done,
                loss, clock,
                ordered=mesh is None), lambda: None)      # (ordered: one device only)
        correct = metrics.accuracy(out, batch.y, w) * n_rows if classes else jnp.zeros(())
        return (params, state), (loss * n_rows, correct)

    def shuffle_and_masks(key):
        """An epoch's key -> (its shuffle's key, its dropout masks' key or None)."""
        return tuple(jax.random.split(key)) if dropout else (key, None)

    def train_epoch(carry, keys, order=None, i=start_epoch + 1):   # i: the epoch's number
        # keys: shuffle_and_masks(the epoch's key); order: the shuffle, if made already
        k_shuffle, k_masks = keys
        masks = None if k_masks is None else backend.keys_through_scan(
            jax.random.split(k_masks, steps))                   # (no dropout: the same shuffle)
        if full:                                                # one batch of every row:
            rows, w = jnp.arange(n)[None, :], jnp.ones((1, n), train.x.dtype)   # no shuffle
        else:                                                   # a new shuffle
            rows, w = data.batches(k_shuffle, n, batch_size, train.x.dtype, padded,
                                   order=order)
        carry, (loss_sums, correct) = lax.scan(
            batch_step, carry, (jnp.arange(1, steps + 1),          # the step in the epoch,
                                (i - start_epoch - 1) * steps + jnp.arange(1, steps + 1),
                                rows, w, masks))                    # and in this call
        params = carry[0]
        history = {"train_loss": loss_sums.sum() / n}
        if classes:
            history["train_accuracy"] = correct.sum() / n
        if test is not None:                                    # evaluate after the epoch
            out = model.forward(net, params, test.x)            # running statistics, no dropout
            history["test_loss"] = net.loss.fn(out, test.y, jnp.ones(test.x.shape[0], out.dtype))
            if classes:
                history["test_accuracy"] = metrics.accuracy(out, test.y)
        if probe is not None:
            history["probe"] = probe(params)
        return carry, history

    # one key per epoch of the whole run; split(key, m)[:k] is split(key, k) (partitionable
    # threefry, JAX's default), so a run resumed at start_epoch draws the keys of one long run
    all_epochs = start_epoch + epochs
    if ensemble:                # every network's shuffle at once (data.shuffles), then each
        def train_epochs(carry, keys):                          # network's epoch
            k_shuffles, k_masks = jax.vmap(shuffle_and_masks)(keys)
            orders = None if full else data.shuffles(k_shuffles, n)
            return jax.vmap(train_epoch)(carry, (None, k_masks), orders)   # (shuffled here)
        keys = jax.vmap(epoch_keys, in_axes=(0, None), out_axes=1)(key, all_epochs)  # [epochs, m]
    else:
        keys = epoch_keys(key, all_epochs)                      # [epochs]
    keys = keys[start_epoch:]

    def run_epoch(carry, i, key):
        if ensemble:
            carry, history = train_epochs(carry, key)
        else:
            carry, history = train_epoch(carry, shuffle_and_masks(key), i=i)
        if verbose:                                             # one host call per epoch
            printed = {k: v for k, v in history.items() if k != "probe"}
            if mesh is not None and ensemble:                   # every network's, gathered
                printed = parallel.whole_on_every_device(mesh, printed)
            jax.debug.callback(partial(runlog.print_epoch, all_epochs, start_epoch, verbose,
                                       net.loss.name), i, printed, clock, ordered=mesh is None)
        return carry, history

    def epoch_step(carry, inputs):
        i, key_data = inputs
        key = backend.key_from_scan(key_data, impl)
        if patience is None:
            return run_epoch(carry, i, key)
        carry, stop = carry                                     # early stopping: once stopped,
        skipped = jax.tree.map(                                 # an epoch computes nothing
            lambda s: jnp.full(s.shape, jnp.nan, s.dtype),
            jax.eval_shape(lambda c: run_epoch(c, i, key)[1], carry))
        carry, history = lax.cond(stop.stopped(patience), lambda c: (c, skipped),
                                  lambda c: run_epoch(c, i, key), carry)
        stop = stop.after(i, history[monitor], carry[0], runlog.monitor_sign(monitor),
                          min_delta)
        return (carry, stop), history

    epochs_in = (jnp.arange(start_epoch + 1, all_epochs + 1), backend.keys_through_scan(keys))
    carry = (params, state)
    if patience is not None:
        carry = (carry, runlog.Stop.start(params, train.x.dtype))
    carry, history = lax.scan(epoch_step, carry, epochs_in)
    (params, state), stop = carry if patience is not None else (carry, None)
    if ensemble:                                # [epochs, m, ...] -> [m, epochs, ...]
        history = jax.tree.map(lambda v: jnp.swapaxes(v, 0, 1), history)
    return params, history, state, stop


def train_step(net, optimizer, lr, params, state, batch, w, key, pieces=None):
    """One training step, the phases of every loop here: forward and backward by hand (in
    `pieces` of the rows; None: as many as pieces.step_pieces says), the optimizer's step,
    then the state that takes no gradient (BatchNorm's running statistics) from this batch.
    Returns (params, optimizer state, loss, output)."""
    loss, g, out, caches = model.backprop(net, params, batch, w, key, train=True, pieces=pieces)
    new_params, state = _update(params, state, g, lr, optimizer)
    return model.update_state(net, params, new_params, caches), state, loss, out


def _update(params, state, g, lr, optimizer):
    """One optimizer step: plain SGD with a traced lr, or the given optimizer's update."""
    if optimizer is None:
        return model.sgd(params, g, lr), state                  # p <- p - lr dL/dp
    updates, state = optimizer.update(g, state, params)
    return optim.apply_updates(params, updates), state          # p <- p + u


def fit_steps(key: rng.Key, net, params: model.Params, train, *, steps: int,
              batch_size: int = 64, lr=None, optimizer=None, state=None,
              progress_every: int = 0, start_step: int = 0, total_steps: int | None = None):
    """Seed 3's loop: `steps` gradient steps, each on a mini-batch drawn at random, compiled as
    one `lax.scan`. Returns (params, optimizer state, losses: f32[steps]).

    `train`: a Dataset, whose rows are drawn with replacement; or, for a network that takes
    tokens, a text's ids `int[m]`, from which each step draws `batch_size` windows of t + 1
    (`funcnn.data.windows`, t the network's context): x the first t of each, y the next t.
    Step i draws with `fold_in(key, i)`, so a run made of several calls (the optimizer's
    state passed back with `state=`, `start_step=` the steps already run, the same key) takes
    the same batches as one call. `progress_every=N` prints a line every N steps, numbered
    of `total_steps` (the whole run's; default start_step + steps)."""
    key = rng.check_key(key)
    integer("steps", steps, 1)
    integer("start_step", start_step, 0)
    integer("progress_every", progress_every, 0)
    total_steps = start_step + steps if total_steps is None else integer(
        "total_steps", total_steps, start_step + steps)
    if net.layer.takes_tokens and getattr(train, "ndim", None) == 1:     # a text's ids
        train = _check_tokens(net, train)
        lr, _ = _check_run(net, params, lr, batch_size, optimizer)
    else:
        train, _, lr = _check_fit_args(net, params, train, None, 1, lr, batch_size, optimizer,
                                       None)
    state = _check_state(optimizer, params, state)
    return _fit_steps(key, params, state, train, lr, runlog.clock(), np.int32(start_step),
                      net=net, steps=steps, batch_size=batch_size, optimizer=optimizer,
                      every=progress_every, total_steps=total_steps)


@partial(jax.jit, static_argnames=("net", "steps", "batch_size", "optimizer", "every",
                                   "total_steps"))
def _fit_steps(key, params, state, train, lr, clock, start_step=0, *, net, steps, batch_size,
               optimizer, every, total_steps):
    def step(carry, i):
        params, state = carry
        k = jax.random.fold_in(key, i)
        k_mask = None
        if net.layer.needs_key:                                 # dropout: a key for the masks
            k, k_mask = jax.random.split(k)
        if isinstance(train, Dataset):                          # rows, with replacement
            rows = jax.random.randint(k, (batch_size,), 0, train.x.shape[0])
            batch = Dataset(train.x[rows], train.y[rows])
        else:                                                   # windows of a text's ids
            batch = Dataset(*data.windows(k, train, batch_size, net.input_shape[0]))
        w = jnp.ones(batch_size, jax.tree.leaves(params)[0].dtype)
        params, state, loss, _ = train_step(net, optimizer, lr, params, state, batch, w, k_mask)
        if every:                                               # a line every N steps
            lax.cond((i + 1) % every == 0, lambda: jax.debug.callback(
                partial(runlog.print_step, total_steps, steps, net.loss.name), i + 1,
                i + 1 - start_step, loss, clock), lambda: None)
        return (params, state), loss

    (params, state), losses = lax.scan(step, (params, state),
                                       start_step + jnp.arange(steps))
    return params, state, losses


def _check_tokens(net, tokens):
    """A text's ids for fit_steps: int[m], at least one window (the network's context + 1)."""
    if not jnp.issubdtype(tokens.dtype, jnp.integer):
        raise InputTypeError(f"train must hold a text's ids (integers), got {tokens.dtype}; "
                             "pass text.train (funcnn.data.text)")
    t = net.input_shape[0]
    if tokens.shape[0] < t + 1:
        raise InputError(f"train holds {tokens.shape[0]} ids, fewer than a window of the "
                         f"network's context + 1 = {t + 1}; use a longer text or a shorter "
                         "context")
    return jnp.asarray(tokens, jnp.int32)


# --- checks, in plain Python before any compilation ------------------------------------------

def _check_fit_args(net, params, train, test, epochs, lr, batch_size, optimizer, probe):
    train = model.check_batch(net, train, "train")
    if test is not None:
        test = model.check_batch(net, test, "test")
    integer("epochs", epochs, 1)
    lr, dtype = _check_run(net, params, lr, batch_size, optimizer)
    if probe is not None and not callable(probe):
        raise InputTypeError(f"probe must be a function of the params, got {probe!r}")
    cast = lambda ds: Dataset(_as(ds.x, dtype), _as(ds.y, dtype))
    return cast(train), None if test is None else cast(test), lr


def _check_run(net, params, lr, batch_size, optimizer):
    """What every training loop checks: the params, the batch size, the optimizer or lr.
    Returns (lr, the params' dtype)."""
    model.check_params(net, params)
    dtype = jax.tree.leaves(params)[0].dtype
    if not jnp.issubdtype(dtype, jnp.floating):
        raise InputTypeError(f"params must be floating point, got {dtype}; make them with "
                             "funcnn.model.init(key, net)")
    integer("batch_size", batch_size, 1)
    if optimizer is not None:
        optim.check_optimizer(optimizer)
        if lr is not None:
            raise InputError(f"give the learning rate to the optimizer, not to fit: "
                             f"optimizer={optimizer!r} already has one; drop lr={lr!r}")
        lr = 0.0                                # unused: the optimizer holds its own
    else:
        lr = 0.5 if lr is None else lr          # the Clojure default
        model.check_lr(lr)
    if not isinstance(lr, jax.core.Tracer):     # a host scalar of the params' dtype: every lr
        lr = np.asarray(lr, dtype)              # has the same abstract type, so no recompile
    return lr, dtype


def _as(v, dtype):
    """Data in the params' dtype; integers (tokens, class ids) stay integers (int32)."""
    if jnp.issubdtype(v.dtype, jnp.integer):
        return jnp.asarray(v, jnp.int32)
    return jnp.asarray(v, dtype)


def _check_batches(net, n: int, batch_size: int) -> None:
    """An epoch of n rows in batches of batch_size (the last one partial) leaves no batch of
    one row for a network with BatchNorm (its statistics need 2 rows or more)."""
    if net.layer.weighs_rows and (min(n, batch_size) == 1 or (n > batch_size and
                                                              n % batch_size == 1)):
        raise InputError(f"{net!r} has BatchNorm, whose batch statistics need 2 rows or more "
                         f"in every batch, but {n} rows in batches of {batch_size} leave a "
                         "batch of one; choose another batch_size (or drop a row)")


def _check_state(optimizer, params, state):
    """The optimizer state to start from: a fresh one, or one a previous call returned."""
    fresh = () if optimizer is None else optimizer.init(params)
    if state is None:
        return fresh
    if jax.tree.structure(state) != jax.tree.structure(fresh) or any(
            getattr(a, "shape", None) != getattr(b, "shape", None)
            for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(fresh))):
        raise InputError(f"state does not fit {optimizer!r} and these params; pass the state "
                         "that fit(..., return_state=True) returned for the same optimizer")
    return state


def _raise_if_diverged(params, history, lr) -> None:
    if any(isinstance(v, jax.core.Tracer) for v in history.values()):
        return                                  # traced by an outer jit/vmap: values unknown
    losses = [v for k, v in history.items() if k not in ("probe", "best_epoch", "epochs_run")]
    bad = np.stack([~np.isfinite(np.asarray(v)) for v in losses]).any(axis=0)
    if not bad.any():                           # bad: [epochs] or [networks, epochs]
        return
    first = int(np.argmax(bad.reshape(-1, bad.shape[-1]).any(axis=0))) + 1
    raise TrainingDiverged(
        f"training diverged: the loss became NaN or Inf in epoch {first}"
        f"{f' (lr={float(lr):g})' if float(lr) > 0 else ''}. "
        "Lower lr (by 10x, say) or check the data's scale; the partial history is on this "
        "error's .history", params, history)
