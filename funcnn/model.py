"""The network: the Clojure project's `nn.model`. Description, init, forward, backprop.

Contract: an `MLP` describes a network (sizes, activations, loss, init scheme) and holds no
numbers; it is frozen and hashable, so it is a static argument of `jit`. Its parameters are a
plain pytree, a tuple with one `{"w": f32[d_in, d_out], "b": f32[d_out]}` per layer.
`grads` is backpropagation written by hand: the loss's VJP, then each layer's activation VJP
and dense VJP, from the last layer to the first. `jax.grad` is never used here; it is the
referee in `funcnn.gradcheck` and in the tests.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Sequence

import jax
import jax.numpy as jnp
from jax import lax

from funcnn import rng
from funcnn.checks import InputError, InputTypeError, integer, real
from funcnn.data import Dataset, check_dataset
from funcnn.losses import Loss
from funcnn.math import Activation

Params = tuple   # tuple of {"w": f32[d_in, d_out], "b": f32[d_out]}, one per layer


# --- init schemes: (key, d_in, d_out, dtype) -> {"w", "b"} ----------------------------------

@dataclass(frozen=True)
class uniform:
    """w and b uniform in [-a, a] (the Clojure default, a = 0.5; DotCSV's, a = 1)."""
    a: float = 0.5

    def __post_init__(self):
        real("a (the half-width of uniform(a))", self.a, positive=True)

    def __call__(self, key, d_in, d_out, dtype):
        k_w, k_b = jax.random.split(key)
        return {"w": rng.uniform(k_w, (d_in, d_out), -self.a, self.a, dtype),
                "b": rng.uniform(k_b, (d_out,), -self.a, self.a, dtype)}


@dataclass(frozen=True)
class glorot:
    """Xavier/Glorot uniform: w in [-s, s], s = sqrt(6 / (d_in + d_out)); b = 0."""

    def __call__(self, key, d_in, d_out, dtype):
        s = (6.0 / (d_in + d_out)) ** 0.5
        return {"w": rng.uniform(key, (d_in, d_out), -s, s, dtype), "b": jnp.zeros(d_out, dtype)}


xavier = glorot


@dataclass(frozen=True)
class he:
    """He normal, for ReLU: w ~ N(0, 2 / d_in); b = 0."""

    def __call__(self, key, d_in, d_out, dtype):
        w = jax.random.normal(key, (d_in, d_out), dtype) * (2.0 / d_in) ** 0.5
        return {"w": w, "b": jnp.zeros(d_out, dtype)}


@dataclass(frozen=True)
class lecun:
    """`randn / sqrt(fan_in)` (seed 2's init, LeCun normal): w ~ N(0, 1 / d_in); b = 0."""

    def __call__(self, key, d_in, d_out, dtype):
        w = jax.random.normal(key, (d_in, d_out), dtype) / d_in ** 0.5
        return {"w": w, "b": jnp.zeros(d_out, dtype)}


# --- the description -------------------------------------------------------------------------

@dataclass(frozen=True)
class MLP:
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
    _check_init(init)
    return MLP(sizes, hidden, output, loss, init)


def _check_init(init) -> None:
    """Try the scheme on shapes alone (nothing runs): it must make {"w": [2, 3], "b": [3]}."""
    want = {"w": (2, 3), "b": (3,)}
    try:
        got = jax.eval_shape(lambda: init(jax.random.key(0), 2, 3, jnp.float32))
        ok = isinstance(got, dict) and {n: v.shape for n, v in got.items()} == want
    except Exception:
        ok = False
    if not ok:
        raise InputTypeError(f"init must be a scheme such as funcnn.model.uniform(0.5): a "
                             f"function (key, d_in, d_out, dtype) -> {{'w', 'b'}}; got {init!r}")


# --- numbers ---------------------------------------------------------------------------------

def init(key: rng.Key, net: MLP, dtype=jnp.float32) -> Params:
    """Draw the parameters: one key per layer, split from `key` in order."""
    _check_net(net)
    return _init(rng.check_key(key), net, jnp.dtype(dtype))


@partial(jax.jit, static_argnums=(1, 2))          # one compile per network, not one per draw
def _init(key, net, dtype):
    keys = jax.random.split(key, len(net.sizes) - 1)
    return tuple(net.init(k, d_in, d_out, dtype)
                 for k, d_in, d_out in zip(keys, net.sizes[:-1], net.sizes[1:], strict=True))


def dense(p, x):
    """x: f32[n, d_in], p["w"]: f32[d_in, d_out], p["b"]: f32[d_out] -> z: f32[n, d_out]."""
    return x @ p["w"] + p["b"][None, :]           # b broadcast over the n rows


def dense_vjp(p, x, g):
    """g = dL/dz: f32[n, d_out] -> (dL/dp shaped like p, dL/dx: f32[n, d_in])."""
    # z = x W + b  =>  dL/dW = x^T g,  dL/db = sum over rows of g,  dL/dx = g W^T
    return {"w": _transposed(x) @ g, "b": g.sum(axis=0)}, g @ p["w"].T


SMALL_X = 16_384   # elements: an x up to this size is transposed by a copy (see _transposed)


def _transposed(x):
    """x.T, copied out when x is small. XLA folds a transpose into the matmul reading it, and
    its CPU backend then gives x^T g to a general routine (YNNPACK, its fast one, takes only
    untransposed operands) that is slow on small and batched products: it took half the time
    of training 256 Clojure networks at once. A copy of a small x costs less; of
    Fashion-MNIST's 128 x 784 batch, more. The barrier only keeps XLA from folding it away."""
    return lax.optimization_barrier(x.T) if x.size <= SMALL_X else x.T


def forward(net: MLP, params: Params, x: jax.Array) -> jax.Array:
    """The network's output for `x: f32[n, d_in]` -> `f32[n, d_out]`."""
    check_params(net, params)
    _check_x(net, x)
    return _forward(net, params, x)


def loss(net: MLP, params: Params, batch: Dataset, w: jax.Array | None = None) -> jax.Array:
    """The mean loss over `batch` (weighted by `w: f32[n]` if given; 0 drops a row)."""
    check_params(net, params)
    check_batch(net, batch)
    return _loss(net, params, batch, _weights(w, batch))


def value_and_grads(net: MLP, params: Params, batch: Dataset,
                    w: jax.Array | None = None) -> tuple[jax.Array, Params, jax.Array]:
    """Backpropagation by hand: (loss, dL/dparams shaped like params, output a: f32[n, d_out])."""
    check_params(net, params)
    check_batch(net, batch)
    return _value_and_grads(net, params, batch, _weights(w, batch))


def grads(net: MLP, params: Params, batch: Dataset, w: jax.Array | None = None) -> Params:
    """dL/dparams by hand-written backpropagation, the same tree as `params`."""
    return value_and_grads(net, params, batch, w)[1]


def sgd(params: Params, g: Params, lr) -> Params:
    """The gradient descent update, p <- p - lr dL/dp, on every leaf."""
    return jax.tree.map(lambda p, d: (p - lr * d).astype(p.dtype), params, g)


def grad_step(net: MLP, params: Params, batch: Dataset, lr,
              w: jax.Array | None = None) -> tuple[Params, jax.Array]:
    """One step of gradient descent on `batch`. Returns (new params, the loss before it)."""
    check_params(net, params)
    check_batch(net, batch)
    check_lr(lr)
    return _grad_step(net, params, batch, _weights(w, batch), lr)


# --- the computations, once the checks above have passed --------------------------------------
# Each is compiled once per network and shape (the network is a static argument), so a call
# in a REPL runs one program rather than dozens of single operations; inside a caller's
# jit, vmap or grad they are inlined like any other function.

@partial(jax.jit, static_argnums=0)
def _forward(net, params, x):
    a = x
    for p, act in zip(params, net.activations, strict=True):
        a = act.fn(dense(p, a))                                        # a = act(x W + b)
    return a


@partial(jax.jit, static_argnums=0)
def _loss(net, params, batch, w):
    return net.loss.fn(_forward(net, params, batch.x), batch.y, w)


@partial(jax.jit, static_argnums=0)
def _value_and_grads(net, params, batch, w):
    # forward, keeping each layer's input x, pre-activation z and activation a
    tape, a = [], batch.x
    for p, act in zip(params, net.activations, strict=True):
        x_in, z = a, dense(p, a)
        a = act.fn(z)
        tape.append((x_in, z, a))
    out = a
    # backward: start from the loss, walk the layers from the last to the first
    g = net.loss.vjp(out, batch.y, w)                                  # dL/da of the last layer
    d_params = [None] * len(params)
    for i in reversed(range(len(params))):
        x_in, z, a = tape[i]
        g = net.activations[i].vjp(z, a, g)                            # dL/da -> dL/dz
        d_params[i], g = dense_vjp(params[i], x_in, g)                 # dL/dz -> dL/dp, dL/dx
    return net.loss.fn(out, batch.y, w), tuple(d_params), out


@partial(jax.jit, static_argnums=0)
def _grad_step(net, params, batch, w, lr):
    value, g, _ = _value_and_grads(net, params, batch, w)
    return sgd(params, g, lr), value


# --- checks: shapes only, so they run the same on arrays and under jit/vmap -----------------

def _check_net(net) -> None:
    if not isinstance(net, MLP):
        raise InputTypeError(f"net must be a network description from funcnn.model.mlp(...), "
                        f"got {type(net).__name__}")


def check_params(net: MLP, params) -> None:
    """Raise a ValueError naming the leaf if `params` does not fit `net`."""
    _check_net(net)
    layers = len(net.sizes) - 1
    if not isinstance(params, (tuple, list)) or len(params) != layers:
        found = len(params) if isinstance(params, (tuple, list)) else type(params).__name__
        raise InputError(f"params must be a tuple of {layers} layers for {net}, got {found}; "
                         "make them with funcnn.model.init(key, net)")
    for i, (p, d_in, d_out) in enumerate(zip(params, net.sizes[:-1], net.sizes[1:])):
        if not isinstance(p, dict) or set(p) != {"w", "b"}:
            raise InputError(f"params[{i}] must be a dict with keys 'w' and 'b', got "
                             f"{sorted(p) if isinstance(p, dict) else type(p).__name__}")
        for leaf, want in (("w", (d_in, d_out)), ("b", (d_out,))):
            got = tuple(getattr(p[leaf], "shape", ()))
            if got != want:
                raise InputError(f"params[{i}]['{leaf}'] has shape {got} but {net} needs "
                                 f"{want}; were these params made for another network?")


def _check_x(net: MLP, x, name: str = "x") -> None:
    if getattr(x, "ndim", None) != 2:
        raise InputError(f"{name} must be a 2-D array [n, {net.sizes[0]}], got shape "
                         f"{getattr(x, 'shape', type(x).__name__)}")
    if x.shape[1] != net.sizes[0]:
        raise InputError(f"{name} has {x.shape[1]} features but the network expects {net.sizes[0]} "
                         f"(sizes={list(net.sizes)}); build it with mlp([{x.shape[1]}, ...])")


def check_batch(net: MLP, batch, name: str = "batch") -> None:
    """Raise if `batch` is not a usable Dataset (see `data.check_dataset`: rows, NaN/Inf,
    one-hot) whose x and y fit the network's input and output."""
    check_dataset(batch, name)
    x, y = batch
    _check_x(net, x, f"{name}.x")
    if y.shape[1] != net.sizes[-1]:
        raise InputError(f"{name}.y is {y.shape[1]} wide (one-hot) but the network has "
                         f"{net.sizes[-1]} outputs (sizes={list(net.sizes)}); make the last "
                         f"size {y.shape[1]}")


def check_lr(lr) -> None:
    """A learning rate must be a finite number > 0 (a traced value, under jit, passes as is)."""
    if not isinstance(lr, jax.core.Tracer):
        real("lr (learning rate)", lr if not hasattr(lr, "item") else lr.item(), positive=True)


def _weights(w, batch):
    n = batch.x.shape[0]
    if w is None:
        return jnp.ones(n, batch.x.dtype)
    if getattr(w, "shape", None) != (n,):
        raise InputError(f"w must hold one weight per row, shape ({n},), got "
                         f"{getattr(w, 'shape', type(w).__name__)}")
    return w
