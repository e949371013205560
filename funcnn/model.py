"""The network: the Clojure project's `nn.model`. A layer and a loss; init, forward, backprop.

Contract: a network (`network(layer, input_shape, loss)`, or `mlp(sizes, ...)` for the
Clojure project's fully connected record; both in `funcnn.networks`, re-exported here)
describes the computation and holds no numbers; it is frozen and hashable, so it is a static
argument of `jit` (one compile per network and shape). Its parameters are a plain pytree made
by `init`: a tuple with one entry per layer of its
`serial` (an `mlp`'s is one `{"w": f32[d_in, d_out], "b": f32[d_out]}` per layer).
Data are `x: f32[n, *input_shape]` and labels `y` of the kind the network's loss reads
(`Loss.labels`, checked by `funcnn.labels`): class ids `int[n]` or one-hot rows `f32[n, k]`
for a classification loss, rows in [0, 1] for a binary one, real targets `f32[n, k]`.
Modes: `forward` and `loss` evaluate by default (`train=False`: no dropout, BatchNorm's running
statistics); `value_and_grads`, `grads` and `grad_step` train (`train=True`: dropout drawn from
`key`, batch statistics). `backprop` is written by hand: the loss's VJP, then each layer's VJP
from the last to the first (`funcnn.layers`). `jax.grad` is never used here; it is the referee
in `funcnn.gradcheck` and in the tests.
"""
from __future__ import annotations

from functools import lru_cache, partial

import jax
import jax.numpy as jnp
import numpy as np

from funcnn import labels, pieces, rng
from funcnn.checks import InputError, InputTypeError, number
from funcnn.data import Dataset, as_dataset, check_dataset, check_finite, check_real
from funcnn.initializers import glorot, he, lecun, uniform, xavier  # noqa: F401 (re-exported)
from funcnn.layers import dense, dense_vjp  # noqa: F401 (re-exported)
from funcnn.networks import MLP, Network, _Net, mlp, network  # noqa: F401 (re-exported)
from funcnn.pieces import in_pieces, step_pieces  # noqa: F401 (re-exported)

Params = tuple   # one entry per layer of the network's serial



# --- numbers ---------------------------------------------------------------------------------

def init(key: rng.Key, net, dtype=jnp.float32) -> Params:
    """Draw the parameters: one key per layer, split from `key` in order."""
    _check_net(net)
    try:
        dt = jnp.dtype(dtype)
    except (TypeError, ValueError):
        raise InputTypeError(f"dtype must be a floating-point dtype such as jnp.float32, got "
                             f"{dtype!r}") from None
    if not jnp.issubdtype(dt, jnp.floating):
        raise InputTypeError(f"dtype must be a floating-point dtype (float32, float16, bfloat16, "
                             f"float64), got {dt}; params take fractional steps: use "
                             "dtype=jnp.float32 (the default)")
    _check_layers(net)
    return _init(rng.check_key(key), net, dt)


@lru_cache(maxsize=256)
def _check_layers(net) -> None:
    """Trace the network once (shapes only, nothing runs): each layer's apply must return what
    its shape() says (serial checks it, naming the layer, as it is traced)."""
    params = _param_shapes(net, jnp.float32)
    x = jax.ShapeDtypeStruct((2, *net.input_shape),
                             jnp.int32 if net.layer.takes_tokens else jnp.float32)
    jax.eval_shape(lambda p, x: net.layer.apply(p, x, False, None)[0], params, x)


@partial(jax.jit, static_argnums=(1, 2))          # one compile per network, not one per draw
def _init(key, net, dtype):
    return net.layer.init(key, net.input_shape, dtype)


def forward(net, params: Params, x: jax.Array, *, train: bool = False, key=None) -> jax.Array:
    """The network's output for `x: f32[n, *input_shape]` -> `f32[n, k]`. Evaluates unless
    `train=True` (then dropout draws from `key` and BatchNorm uses the batch's statistics)."""
    check_params(net, params)
    _check_x(net, x)
    check_finite(x, "x")
    return _forward(net, params, x, _check_mode(net, train, key), train=bool(train))


def loss(net, params: Params, batch: Dataset, w: jax.Array | None = None, *,
         train: bool = False, key=None) -> jax.Array:
    """The mean loss over `batch` (weighted by `w: f32[n]` if given; 0 drops a row)."""
    check_params(net, params)
    batch = check_batch(net, batch)
    return _loss(net, params, batch, _weights(net, w, batch, train), _check_mode(net, train, key),
                 train=bool(train))


def value_and_grads(net, params: Params, batch: Dataset, w: jax.Array | None = None, *,
                    train: bool = True, key=None) -> tuple[jax.Array, Params, jax.Array]:
    """Backpropagation by hand: (loss, dL/dparams shaped like params, output: f32[n, k]).
    Trains by default: dropout from `key`, BatchNorm's batch statistics (whose running
    statistics get a zero gradient)."""
    check_params(net, params)
    batch = check_batch(net, batch)
    return _value_and_grads(net, params, batch, _weights(net, w, batch, train),
                            _check_mode(net, train, key), train=bool(train))


def grads(net, params: Params, batch: Dataset, w: jax.Array | None = None, *,
          train: bool = True, key=None) -> Params:
    """dL/dparams by hand-written backpropagation, the same tree as `params`."""
    return value_and_grads(net, params, batch, w, train=train, key=key)[1]


def sgd(params: Params, g: Params, lr) -> Params:
    """The gradient descent update, p <- p - lr dL/dp, on every leaf."""
    return jax.tree.map(lambda p, d: (p - lr * d).astype(p.dtype), params, g)


def grad_step(net, params: Params, batch: Dataset, lr, w: jax.Array | None = None, *,
              train: bool = True, key=None) -> tuple[Params, jax.Array]:
    """One step of gradient descent on `batch`. Returns (new params, the loss before it).
    BatchNorm's running statistics move with the batch's (they take no gradient step)."""
    check_params(net, params)
    batch = check_batch(net, batch)
    check_lr(lr)
    return _grad_step(net, params, batch, _weights(net, w, batch, train), lr,
                      _check_mode(net, train, key), train=bool(train))


def backprop(net, params, batch, w, key=None, train=True, pieces=None):
    """(loss, dL/dparams, output, caches): the forward pass keeping each layer's cache, the
    loss's VJP, then the layers' VJPs from the last to the first. `caches` is what
    `update_state` needs to move running statistics after a step. A big batch runs in
    `pieces` of rows (None: `funcnn.pieces.step_pieces` decides), the same numbers."""
    count = step_pieces(net, batch.x.shape[0]) if pieces is None else pieces
    return in_pieces(partial(_backprop, net, train=train), params, batch, w, key, count)


def _backprop(net, params, batch, w, key=None, train=True):
    """backprop on the batch at once, the whole algorithm."""
    out, caches = net.layer.apply(params, batch.x, train, key, w=w)  # forward, with the tape
    g = net.loss.vjp(out, batch.y, w)                                # dL/d(output)
    d_params, _ = net.layer.vjp(params, caches, g)                   # back through the layers
    return net.loss.fn(out, batch.y, w), d_params, out, caches


def update_state(net, params, new_params, caches):
    """After an optimizer moved `params` to `new_params`: set the state that takes no
    gradient (BatchNorm's running statistics) from this step's batch. A step run in pieces
    keeps no caches (None): only networks without such state run in pieces."""
    if caches is None:
        return new_params
    return net.layer.update_state(params, new_params, caches)


# --- the computations, once the checks above have passed --------------------------------------
# Each is compiled once per network, mode and shape (the network is a static argument), so a
# call in a REPL runs one program rather than dozens of single operations; inside a caller's
# jit, vmap or grad they are inlined like any other function.

@partial(jax.jit, static_argnames=("net", "train"))
def _forward(net, params, x, key=None, w=None, *, train=False):
    if train:
        return net.layer.apply(params, x, train, key, w=w)[0]
    evaluate = lambda xs: net.layer.apply(params, xs, False, None)[0]
    return pieces.evaluate(evaluate, x, net.layer.workspace(net.input_shape))


@partial(jax.jit, static_argnames=("net", "train"))
def _loss(net, params, batch, w, key=None, *, train=False):
    return net.loss.fn(_forward(net, params, batch.x, key, w, train=train), batch.y, w)


@partial(jax.jit, static_argnames=("net", "train"))
def _value_and_grads(net, params, batch, w, key=None, *, train=True):
    return backprop(net, params, batch, w, key, train)[:3]


@partial(jax.jit, static_argnames=("net", "train"))
def _grad_step(net, params, batch, w, lr, key=None, *, train=True):
    value, g, _, caches = backprop(net, params, batch, w, key, train)
    return update_state(net, params, sgd(params, g, lr), caches), value


# --- checks: shapes only, so they run the same on arrays and under jit/vmap -----------------

def _check_net(net) -> None:
    if not isinstance(net, _Net):
        raise InputTypeError(f"net must be a network description from funcnn.model.network(...) "
                             f"or funcnn.model.mlp(...), got {type(net).__name__}")


def _check_mode(net, train, key):
    """The key dropout draws from, checked; a network that needs one and has none is refused."""
    if not isinstance(train, (bool, np.bool_)):
        raise InputTypeError(f"train must be True or False, got {train!r}")
    if key is None:
        if train and net.layer.needs_key:
            raise InputError(f"{net!r} has Dropout: training it draws a mask, so it needs "
                             "key=jax.random.key(seed) (or pass train=False to evaluate)")
        return None
    return rng.check_key(key)


def _layer_at(net, i):
    layers = net.layer.layers
    return f"layer {i} ({layers[i]!r})" if i < len(layers) else f"layer {i}"


def check_params(net, params) -> None:
    """Raise a ValueError naming the leaf and its layer if `params` does not fit `net`."""
    _check_net(net)
    want = _param_shapes(net, jnp.float32)
    if not isinstance(params, (tuple, list)) or len(params) != len(want):
        found = len(params) if isinstance(params, (tuple, list)) else type(params).__name__
        raise InputError(f"params must be a tuple of {len(want)} layers for {net!r}, got "
                         f"{found}; make them with funcnn.model.init(key, net)")
    for i, (p, w) in enumerate(zip(params, want)):
        where = _layer_at(net, i)
        got_tree, want_tree = jax.tree.structure(p), jax.tree.structure(w)
        if got_tree != want_tree:
            keys = lambda t: (sorted(t) if isinstance(t, dict) else
                              "() (it has no numbers)" if t == () else type(t).__name__)
            raise InputError(f"params[{i}] must be {keys(w)} for {where}, got {keys(p)}; "
                             "were these params made for another network?")
        for path, shape in _in_order(w):          # w first: its shape says most
            leaf = p
            for k in path:
                leaf = leaf[k]
            got = tuple(getattr(leaf, "shape", ()))
            if got != shape.shape:
                raise InputError(f"params[{i}]{''.join(f'[{k!r}]' for k in path)} has shape "
                                 f"{got} but {where} of {net!r} needs {shape.shape}; were these "
                                 "params made for another network?")


def _in_order(tree, path=()):
    """(path, leaf) of nested dicts, tuples and lists in order (a dict's "w" first)."""
    if isinstance(tree, dict):
        items = sorted(tree.items(), key=lambda item: item[0] != "w")
    elif isinstance(tree, (tuple, list)):
        items = enumerate(tree)
    else:
        yield path, tree
        return
    for k, v in items:
        yield from _in_order(v, (*path, k))


@lru_cache(maxsize=256)
def _param_shapes(net, dtype):
    """The params' shapes for `net`: `init` traced once per network, never run."""
    return jax.eval_shape(lambda: _init(jax.random.key(0), net, jnp.dtype(dtype)))


def _check_x_array(x, name: str) -> None:
    """`x` must be a NumPy or JAX array (a tracer too) of real numbers: int, float or bool."""
    if not isinstance(x, (np.ndarray, jax.Array)):
        kind = type(x).__module__.split(".")[0]
        fix = (f"{name}.detach().cpu().numpy()" if kind == "torch" else
               f"np.asarray({name}, np.float32)" if isinstance(x, (list, tuple)) else
               f"a NumPy or JAX array, e.g. np.asarray({name}, np.float32)")
        raise InputTypeError(f"{name} must be a NumPy or JAX array of numbers, got "
                             f"{type(x).__module__}.{type(x).__qualname__}; pass {fix}")
    check_real(x, name)


def _check_x(net, x, name: str = "x") -> None:
    _check_x_array(x, name)
    if net.layer.takes_tokens and not jnp.issubdtype(x.dtype, jnp.integer):
        raise InputTypeError(f"{name} must be integer tokens (the network starts with "
                             f"{net.layer.layers[0]!r}), got {x.dtype}; encode text with "
                             "funcnn.data.text(path).encode, or pass x.astype(np.int32)")
    shape = tuple(net.input_shape)
    if getattr(x, "ndim", None) != 1 + len(shape):
        raise InputError(f"{name} must be a {1 + len(shape)}-D array [n, "
                         f"{', '.join(map(str, shape))}], got shape "
                         f"{getattr(x, 'shape', type(x).__name__)}")
    if x.shape[0] == 0:
        raise InputError(f"{name} is empty (0 rows); it needs at least one example")
    if tuple(x.shape[1:]) != shape:
        if len(shape) == 1:
            raise InputError(f"{name} has {x.shape[1]} features but the network expects "
                             f"{shape[0]}; build it for input_shape=({x.shape[1]},)")
        raise InputError(f"{name} holds examples of shape {tuple(x.shape[1:])} but the network "
                         f"expects {shape}")


def check_batch(net, batch, name: str = "batch") -> Dataset:
    """`batch` as a Dataset (a plain (x, y) pair is made one); raise if it is not usable (see
    `data.check_dataset`: rows, NaN/Inf), its x does not fit the network's input, or its y
    is not what the network's loss reads for its output (`labels.check_labels`: class ids in
    range or one-hot rows, rows in [0, 1], or real targets, by the loss's `labels`)."""
    batch = as_dataset(batch, name)
    check_dataset(batch, name)
    _check_x(net, batch.x, f"{name}.x")
    labels.check_labels(batch.y, net.loss, net.output_shape, f"{name}.y")
    return batch


def check_lr(lr) -> None:
    """A learning rate must be a finite number > 0 (a traced value, under jit, passes as is)."""
    if getattr(lr, "ndim", 0) != 0:
        raise InputTypeError(f"lr (learning rate) must be a number, got an array of shape "
                             f"{tuple(lr.shape)}; pass one float such as lr=0.1 (train once "
                             "per rate to compare several)")
    if not isinstance(lr, jax.core.Tracer):
        number("lr (learning rate)", lr if not hasattr(lr, "item") else lr.item(), positive=True)


def _weights(net, w, batch, train=False):
    """The rows' weights, f32[n] (ones if None): finite, >= 0, not all 0 (checked when
    concrete). A network with BatchNorm trains on 2 rows of weight > 0 or more."""
    n = batch.x.shape[0]
    if w is None:
        return jnp.ones(n, batch.x.dtype)
    if getattr(w, "shape", None) != (n,):
        raise InputError(f"w must hold one weight per row, shape ({n},), got "
                         f"{getattr(w, 'shape', type(w).__name__)}")
    if isinstance(w, jax.core.Tracer):
        return w
    v = np.asarray(w)
    if v.dtype.kind not in "biuf":
        raise InputTypeError(f"w must hold numbers (a weight per row), got dtype {v.dtype}")
    if not np.isfinite(v).all() or (v < 0).any():
        raise InputError("w must be finite and >= 0 (a weight per row; 0 drops a row), got "
                         f"{'NaN or Inf' if not np.isfinite(v).all() else 'a negative weight'}"
                         f" in row {int(np.argmax(~np.isfinite(v) | (v < 0)))}")
    if not (v > 0).any():
        raise InputError("w is all zeros: every row dropped, so the mean loss is 0 / 0; give "
                         "the rows to count a weight > 0")
    if train and net.layer.weighs_rows and (v > 0).sum() < 2:
        raise InputError(f"{net!r} has BatchNorm: a training batch needs 2 rows of weight > 0 "
                         "or more (with one, every output is beta); pass a larger batch")
    return w.astype(batch.x.dtype) if v.dtype == np.bool_ else w


# --- reading the output ----------------------------------------------------------------------

def probabilities(net, out):
    """The network's output `out: f[n, k]` as class probabilities f[n, k], in out's own array
    library (numpy in, numpy out; jax in, jax out) and dtype.

    k = 1: the output is p(class 1), clipped to [0, 1]. k >= 2, by the output activation:
    log_softmax -> exp; softmax and sigmoid -> as they are (k sigmoids need not sum to 1);
    any other (identity, as softmax_cross_entropy's logits; tanh, relu) -> softmax, so the
    largest output is the most probable class.
    """
    xp = jnp if isinstance(out, jax.Array) else np
    if out.shape[-1] == 1:
        return xp.clip(out, 0.0, 1.0)
    output = net.output_activation.name
    if output == "log_softmax":
        return xp.exp(out)                                       # log p -> p
    if output in ("softmax", "sigmoid"):
        return out
    e = xp.exp(out - out.max(axis=-1, keepdims=True))            # softmax, shifted: no overflow
    return e / e.sum(axis=-1, keepdims=True)


from funcnn.sampling import generate  # noqa: E402,F401 (fn.model.generate; sampling uses model)
