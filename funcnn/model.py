"""The network: the Clojure project's `nn.model`. A layer and a loss; init, forward, backprop.

Contract: a network (`network(layer, input_shape, loss)`, or `mlp(sizes, ...)` for the
Clojure project's fully connected record) describes the computation and holds no numbers; it is
frozen and hashable, so it is a static argument of `jit` (one compile per network and shape).
Its parameters are a plain pytree made by `init`: a tuple with one entry per layer of its
`serial` (an `mlp`'s is one `{"w": f32[d_in, d_out], "b": f32[d_out]}` per layer).
Data are `x: f32[n, *input_shape]` and one-hot `y: f32[n, k]`.
Modes: `forward` and `loss` evaluate by default (`train=False`: no dropout, BatchNorm's running
statistics); `value_and_grads`, `grads` and `grad_step` train (`train=True`: dropout drawn from
`key`, batch statistics). `backprop` is written by hand: the loss's VJP, then each layer's VJP
from the last to the first (`funcnn.layers`). `jax.grad` is never used here; it is the referee
in `funcnn.gradcheck` and in the tests.
"""
from __future__ import annotations

import math as _math
from dataclasses import dataclass
from functools import cached_property, lru_cache, partial
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from funcnn import layers as L
from funcnn import backend, rng
from funcnn.checks import InputError, InputTypeError, integer, number
from funcnn.data import Dataset, as_dataset, check_dataset, check_finite
from funcnn.initializers import glorot, he, lecun, uniform, xavier  # noqa: F401 (re-exported)
from funcnn.initializers import check_scheme
from funcnn.layers import dense, dense_vjp  # noqa: F401 (re-exported)
from funcnn.losses import Loss
from funcnn.math import Activation, identity

Params = tuple   # one entry per layer of the network's serial


# --- the descriptions ------------------------------------------------------------------------

class _Net:
    """What every network description shares; a subclass gives `layer`, `input_shape`, `loss`."""

    @property
    def output_shape(self) -> tuple:
        return tuple(self.layer.shape(self.input_shape))

    @property
    def output_activation(self) -> Activation:
        """The activation that makes the output (identity if the last layer has none)."""
        act = getattr(self.layer.layers[-1], "act", None)
        return act if isinstance(act, Activation) else identity

    def summary(self) -> str:
        """The layers one a line, with output shapes and parameter counts (Keras's summary)."""
        layers, shapes = self.layer.layers, self.layer.shapes(self.input_shape)
        params = jax.eval_shape(lambda: init(jax.random.key(0), self))
        rows = [(f"{i}: {layer!r}", str(shape), sum(_math.prod(v.shape) for v in
                                                 jax.tree.leaves(p)))
                for i, (layer, shape, p) in enumerate(zip(layers, shapes, params))]
        w0 = max(len(r[0]) for r in rows + [("layer", "", 0)])
        w1 = max(len(r[1]) for r in rows + [("", "output", 0)])
        lines = [f"{'layer':<{w0}}  {'output':<{w1}}  params",
                 f"{'input':<{w0}}  {tuple(self.input_shape)}"]
        lines += [f"{a:<{w0}}  {b:<{w1}}  {c:,}" for a, b, c in rows]
        lines.append(f"total {sum(r[2] for r in rows):,} numbers; loss {self.loss}")
        return "\n".join(lines)


@dataclass(frozen=True)
class Network(_Net):
    layer: L.Serial           # the layers, in order (a lone layer is made a serial of one)
    input_shape: tuple        # one example's shape: (784,), (28, 28, 1), ...
    loss: Loss                # of the output and the labels

    def __repr__(self) -> str:
        return f"network({self.layer!r}, input {self.input_shape}, {self.loss})"


def network(layer, input_shape, loss: Loss) -> Network:
    """Describe a network: `layer` (a `serial` of layers, usually) on inputs of `input_shape`
    (one example's shape, no batch axis), trained on `loss`. Shapes are checked here, layer by
    layer, so a mistake is named before anything compiles:

        net = network(serial(Dense(128), relu, Dense(10)), input_shape=(784,),
                      loss=softmax_cross_entropy)
    """
    layer = L.as_layer(layer, "layer")
    layer = layer if isinstance(layer, L.Serial) else L.serial(layer)   # params: a tuple
    if not layer.layers:
        raise InputError("layer is an empty serial(): a network needs at least one layer, "
                         "e.g. serial(Dense(10))")
    _check_hashable(layer)
    shape = (input_shape,) if isinstance(input_shape, int) else input_shape
    try:
        shape = tuple(integer("input_shape", s, 1) for s in shape)
    except (InputError, InputTypeError, TypeError):
        shape = ()
    if not shape:
        raise InputError(f"input_shape must be one example's shape, positive ints like (784,) "
                         f"or (28, 28, 1); got {input_shape!r}")
    if not isinstance(loss, Loss):
        raise InputTypeError(f"loss must be a loss such as funcnn.losses.mse, got "
                             f"{type(loss).__name__}")
    out = tuple(layer.shape(shape))
    if len(out) != 1:
        raise InputError(f"the network's output is {out} per example, but a loss compares a "
                         f"flat output (k,) with one-hot labels; end with Flatten() and a "
                         f"Dense(k)")
    net = Network(layer, shape, loss)
    _check_loss_fits(loss, net.output_activation, out[0])
    return net


@dataclass(frozen=True)
class MLP(_Net):
    """The Clojure project's record: dense layers, one activation for every hidden layer."""
    sizes: tuple[int, ...]    # (d_in, hidden..., d_out)
    hidden: Activation        # after every layer but the last
    output: Activation        # after the last layer
    loss: Loss                # of the output and the labels
    init: object              # a scheme: (key, d_in, d_out, dtype) -> {"w", "b"}

    def __repr__(self) -> str:
        return f"MLP({' -> '.join(map(str, self.sizes))}, {self.hidden}, {self.output}, {self.loss})"

    @property
    def activations(self) -> tuple[Activation, ...]:
        return (self.hidden,) * (len(self.sizes) - 2) + (self.output,)

    @cached_property
    def layer(self) -> L.Serial:        # a Dense that carries its activation, per layer
        return L.serial(*(L.Dense(d, act, self.init)
                          for d, act in zip(self.sizes[1:], self.activations, strict=True)))

    @property
    def input_shape(self) -> tuple:
        return (self.sizes[0],)


def mlp(sizes: Sequence[int], hidden: Activation, output: Activation, loss: Loss,
        init=uniform(0.5)) -> MLP:
    """Describe a fully connected network. `mlp([2, 8, 2], ...)`: 2 inputs, a hidden layer of
    8 units, 2 outputs; `mlp([2, 4, 8, 1], ...)`: two hidden layers (4 then 8), 1 output."""
    try:
        sizes = tuple(sizes)                           # a list, a tuple, a range, a NumPy array
    except TypeError:
        raise InputError(f"sizes must list the layer widths, like [2, 8, 2]; got {sizes!r}") from None
    if len(sizes) < 2:
        raise InputError(f"sizes must list at least an input and an output size, like [2, 8, 2]; "
                         f"got {list(sizes)}")
    try:
        sizes = tuple(integer("sizes", s, 1) for s in sizes)
    except (InputError, InputTypeError):
        raise InputError(f"sizes must be positive ints (no zero layers), got {list(sizes)}") from None
    for name, act in (("hidden", hidden), ("output", output)):
        if not isinstance(act, Activation):
            raise InputTypeError(f"{name} must be an activation such as funcnn.math.sigmoid, "
                            f"got {type(act).__name__}")
    if not isinstance(loss, Loss):
        raise InputTypeError(f"loss must be a loss such as funcnn.losses.mse, got {type(loss).__name__}")
    check_scheme(init)
    _check_loss_fits(loss, output, sizes[-1])
    return MLP(sizes, hidden, output, loss, init)


def _check_loss_fits(loss, output: Activation, k: int) -> None:
    """Refuse a loss that cannot read the network's output, with the fix."""
    if loss.name == "softmax_cross_entropy" and k < 2:
        raise InputError("loss softmax_cross_entropy needs k >= 2 outputs (one logit per "
                         "class), but the network has 1: with one output the softmax is "
                         "always 1 and nothing is learnt. Make the last layer 2 wide, or use "
                         "a sigmoid output with binary_cross_entropy")
    if loss.name == "binary_cross_entropy" and output.name not in ("sigmoid", "softmax"):
        raise InputError(f"loss binary_cross_entropy needs outputs in (0, 1), but the "
                         f"network's output activation is {output.name}; end with a sigmoid "
                         "(or use softmax_cross_entropy on the raw outputs)")
    if loss.name == "nll" and output.name != "log_softmax":
        raise InputError(f"loss nll needs log-probabilities, but the network's output "
                         f"activation is {output.name}; end with log_softmax (or use "
                         "softmax_cross_entropy on the raw outputs)")


def _check_hashable(layer) -> None:
    """A network is a static argument of jit: each layer in it must hash. And a layer of
    your own must have the protocol's three functions (funcnn/layers/__init__.py)."""
    for i, sub in enumerate(layer.layers):
        missing = [f for f in ("shape", "apply", "vjp") if not callable(getattr(sub, f, None))]
        if missing:
            raise InputTypeError(f"layer {i} ({type(sub).__name__}) has no {', '.join(missing)}: "
                                 "a layer needs shape(input_shape), apply(p, x, train, key) "
                                 "and vjp(p, cache, g) (see funcnn/layers/__init__.py)")
        try:
            hash(sub)
        except TypeError as e:
            raise InputTypeError(f"layer {i} ({type(sub).__name__}) cannot be hashed ({e}); a "
                                 "layer is a description jit compiles for: make it a "
                                 "@dataclass(frozen=True) whose fields are numbers, strings or "
                                 "tuples (no lists, dicts or arrays)") from None


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
    x = jax.ShapeDtypeStruct((2, *net.input_shape), jnp.float32)
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
    `pieces` (None: `step_pieces` decides; see `in_pieces`)."""
    pieces = step_pieces(net, batch.x.shape[0]) if pieces is None else pieces
    return in_pieces(partial(_backprop, net, train=train), params, batch, w, key, pieces)


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


# --- a big step in pieces ---------------------------------------------------------------------
# A training step whose rows would need more than PIECE_FLOATS floats of workspace (below) runs
# them in pieces, one after another, and sums their gradients: the same numbers up to rounding,
# while a piece's activations, patch matrices and their gradients stay in the cache. A piece
# keeps at least PIECE_ROWS rows: with fewer, the products (Winograd's 16 above all) run far
# below the machine's rate. fit at batch 128, pieces of 32 rows against the whole step: the
# issue's small CNN (34,496 floats a row) 0.85x (26 rows: 0.81-0.87x, 15 rows: 0.93x); with 32
# -> 64 channels, Winograd, 68,992 floats a row, 0.91x (15 rows: 1.12x, slower); fashion-cnn
# without its BatchNorm 0.78x (15 rows: 1.11x); 64 -> 128 channels (137,984 floats a row, over
# the 4 PIECE_FLOATS cap at 32 rows) 1.08x, so it runs whole. The NumPy seed's MLP, a full
# batch of 50,000 rows in 38 pieces: 0.97x (2026-12-06, AMD EPYC Zen 4, AVX-512, 2 cores; A/B
# in alternating processes, 4-5 rounds). A network whose layers couple the rows in training
# (BatchNorm's batch statistics) always runs whole.

def step_pieces(net, n: int) -> int:
    """How many pieces a training step on n rows runs in: pieces of PIECE_FLOATS floats of
    workspace, but of no fewer than PIECE_ROWS rows; 1 unless every layer says its rows are
    independent (BatchNorm's are not, nor a layer of your own that does not say so), or if
    PIECE_ROWS rows would need over 4 PIECE_FLOATS (a piece that feeds the products well
    would not stay in the cache)."""
    per_row = net.layer.workspace(net.input_shape)
    rows = max(PIECE_ROWS, PIECE_FLOATS // per_row)
    if not net.layer.independent_rows or n <= rows or rows * per_row > 4 * PIECE_FLOATS:
        return 1
    return -(-n // rows)


def in_pieces(grads, params, batch, w, key, pieces: int):
    """grads(params, batch, w, key) -> (loss, dL/dparams, output, caches), run on `pieces`
    slices of `rows` rows in turn (a lax.scan) -> the whole batch's (loss, dL/dparams,
    output, None); one piece is grads' own call, caches and all. With S = sum_i w_i and S_p a
    piece's sum, L = sum_i w_i l_i / S = sum_p (S_p / S) L_p, and the gradient likewise. The
    last slice ends at row n; rows in it that an earlier piece had count with weight 0 (so
    nothing is copied or padded). `key` is split into one key per row before the rows are
    cut, and each piece takes its rows' keys: a row draws the dropout mask it would draw in
    the whole batch, so the pieces' sum is the gradient of the whole batch's loss."""
    if pieces == 1:
        return grads(params, batch, w, key)
    n = batch.x.shape[0]
    rows = -(-n // pieces)
    impl = None if key is None else jax.random.key_impl(key)
    keys = None if key is None else backend.keys_through_scan(L.row_keys(key, n))
    total = w.sum()

    def piece(g_sum, i):
        start = jnp.minimum(i * rows, n - rows)
        x, y, w_p = (lax.dynamic_slice_in_dim(a, start, rows) for a in (batch.x, batch.y, w))
        w_p = jnp.where(start + jnp.arange(rows) >= i * rows, w_p, 0)   # not counted before
        share = w_p.sum() / total
        w_p = jnp.where(share > 0, w_p, 1.0)        # a piece of padding only: counted 0 times
        key_p = None if keys is None else backend.key_from_scan(
            lax.dynamic_slice_in_dim(keys, start, rows), impl)    # the piece's rows' keys
        loss, g, out, _ = grads(params, Dataset(x, y), w_p, key_p)
        return jax.tree.map(lambda s, d: s + share * d, g_sum, g), (share * loss, out)

    zeros = jax.tree.map(jnp.zeros_like, params)
    g, (losses, out) = lax.scan(piece, zeros, jnp.arange(pieces))
    before_last = (pieces - 1) * rows                # the last piece's rows from there on
    out = jnp.concatenate([out[:-1].reshape(before_last, *out.shape[2:]),
                           out[-1, before_last - (n - rows):]])
    return losses.sum(), g, out, None


# --- the computations, once the checks above have passed --------------------------------------
# Each is compiled once per network, mode and shape (the network is a static argument), so a
# call in a REPL runs one program rather than dozens of single operations; inside a caller's
# jit, vmap or grad they are inlined like any other function.

# Evaluation that would need more than EVAL_FLOATS floats at once (10,000 images through a
# convolution's patches: 340 million) runs in pieces of at most PIECE_FLOATS each (as does a
# big training step, above), a size that stays in a core's cache: on the 2-core CPU of
# benchmarks/RESULTS.md, pieces of 2^20 floats evaluate the fashion-cnn 1.6x faster than
# pieces of 2^25, and 2^19 or 2^21 are slower.
EVAL_FLOATS = 1 << 25
PIECE_FLOATS = 1 << 20
PIECE_ROWS = 32                 # a training piece's fewest rows (step_pieces)


@partial(jax.jit, static_argnames=("net", "train"))
def _forward(net, params, x, key=None, w=None, *, train=False):
    per_row = net.layer.workspace(net.input_shape)
    n = x.shape[0]
    if train or n * per_row <= EVAL_FLOATS:
        return net.layer.apply(params, x, train, key, w=w)[0]
    # a big evaluation in equal pieces of at most PIECE_FLOATS
    pieces = -(-n // max(1, PIECE_FLOATS // per_row))
    rows = -(-n // pieces)                                  # the last piece padded, a little
    x = jnp.concatenate([x, jnp.zeros((pieces * rows - n, *x.shape[1:]), x.dtype)])
    out = lax.map(lambda xs: net.layer.apply(params, xs, False, None)[0],
                  x.reshape(pieces, rows, *x.shape[1:]))
    return out.reshape(pieces * rows, *out.shape[2:])[:n]


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
    if not (x.dtype == np.bool_ or jnp.issubdtype(x.dtype, jnp.integer)
            or jnp.issubdtype(x.dtype, jnp.floating)):
        raise InputTypeError(f"{name} must hold real numbers (float, int or bool), got dtype "
                             f"{x.dtype}; convert it, e.g. {name}.astype(np.float32) (strings: "
                             "parse them to numbers first; complex: take .real or abs)")


def _check_x(net, x, name: str = "x") -> None:
    _check_x_array(x, name)
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
    `data.check_dataset`: rows, NaN/Inf, one-hot) or its x and y do not fit the network's
    input and output."""
    batch = as_dataset(batch, name)
    check_dataset(batch, name)
    x, y = batch
    _check_x(net, x, f"{name}.x")
    k = net.output_shape[0]
    if y.shape[1] != k:
        raise InputError(f"{name}.y is {y.shape[1]} wide (one-hot) but the network has "
                         f"{k} outputs; make the last layer {y.shape[1]} wide")
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
