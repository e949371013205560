"""Optimizers by hand, shaped like optax: sgd, momentum (and Nesterov), adam, L2 weight decay.

Contract: an optimizer has two pure functions, `init(params) -> state` and
`update(grads, state, params=None) -> (updates, state)`. Updates carry the minus sign;
`apply_updates(params, updates)` adds them leaf by leaf. The state is a pytree of arrays only
(a `lax.scan` carry; `vmap` it for an ensemble). The hyperparameters are the fields of a frozen
dataclass, so an optimizer is hashable and equal by value: a static argument of `jit` that
compiles once however often `adam(1e-3)` is rebuilt. One training step:

    opt = weight_decay(adam(1e-3), 1e-3)        # repr: weight_decay(adam(lr=0.001), decay=0.001)
    state = opt.init(params)
    loss, g, _ = model.value_and_grads(net, params, batch)
    updates, state = opt.update(g, state, params)
    params = apply_updates(params, updates)
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from funcnn.checks import InputError, InputTypeError, number

Params = Any   # a pytree: funcnn's tuple of {"w", "b"} dicts, or any other


class Optimizer(NamedTuple):
    """Two pure functions as an optimizer, for one of your own. Pass module-level functions
    (not closures): then two `Optimizer`s built from them are equal and `jit` compiles once."""
    init: Callable     # params -> state
    update: Callable   # (grads, state, params) -> (updates, state)


def apply_updates(params: Params, updates: Params) -> Params:
    """p <- p + u on every leaf, kept in the leaf's dtype."""
    return jax.tree.map(lambda p, u: (p + u).astype(p.dtype), params, updates)


# --- shared by the optimizers: hyperparameters, checked by funcnn.checks.number, are fields ----

def _set(opt, field, value):
    object.__setattr__(opt, field, value)       # a frozen dataclass keeps the checked value


def _repr(opt) -> str:
    """`adam(lr=0.001)`: lr, then only the fields that differ from their defaults."""
    shown = [f"{f.name}={getattr(opt, f.name)!r}" for f in dataclasses.fields(opt)
             if f.default is dataclasses.MISSING or getattr(opt, f.name) != f.default]
    return f"{type(opt).__name__}({', '.join(shown)})"


def _is_weight(path) -> bool:
    """Is this leaf a dict entry named "w" (params[i]["w"]), not a "b"?"""
    return bool(path) and getattr(path[-1], "key", None) == "w"


# --- the optimizers ----------------------------------------------------------------------------

@dataclass(frozen=True, repr=False)
class sgd:
    """Gradient descent: u_t = -lr g_t. No state (an empty tuple)."""
    lr: float
    __repr__ = _repr

    def __post_init__(self):
        _set(self, "lr", number("lr (learning rate)", self.lr, positive=True, hint="try 0.01"))

    def init(self, params):
        del params
        return ()

    def update(self, grads, state, params=None):
        del params                                                     # unused
        return jax.tree.map(lambda g: -self.lr * g, grads), state      # u_t = -lr g_t


class MomentumState(NamedTuple):
    v: Params          # velocity, shaped like params: v_t = mu v_{t-1} + g_t, v_0 = 0


@dataclass(frozen=True, repr=False)
class momentum:
    """Heavy ball, as PyTorch and optax write it: v_t = mu v_{t-1} + g_t, u_t = -lr v_t.
    `nesterov=True` steps along the look-ahead gradient instead: u_t = -lr (g_t + mu v_t).
    (The form v_t = mu v_{t-1} - lr g_t, p += v_t is the same steps for a constant lr.)"""
    lr: float
    mu: float = 0.9
    nesterov: bool = False
    __repr__ = _repr

    def __post_init__(self):
        _set(self, "lr", number("lr (learning rate)", self.lr, positive=True, hint="try 0.01"))
        _set(self, "mu", number("mu (momentum)", self.mu, least=0, hi=1, hint="0.9 is usual"))
        if not isinstance(self.nesterov, bool):
            raise InputTypeError(f"nesterov must be True or False, got {self.nesterov!r}")

    def init(self, params):
        return MomentumState(v=jax.tree.map(jnp.zeros_like, params))   # v_0 = 0

    def update(self, grads, state, params=None):
        del params                                                     # unused
        mu, lr = self.mu, self.lr
        v = jax.tree.map(lambda v, g: mu * v + g, state.v, grads)      # v_t = mu v_{t-1} + g_t
        if self.nesterov:
            step = jax.tree.map(lambda v, g: g + mu * v, v, grads)     # g_t + mu v_t
        else:
            step = v
        return jax.tree.map(lambda s: -lr * s, step), MomentumState(v)  # u_t = -lr step


class AdamState(NamedTuple):
    t: jax.Array       # i32[] steps taken so far
    m: Params          # first moment (mean of g), shaped like params
    v: Params          # second moment (mean of g^2), shaped like params


@dataclass(frozen=True, repr=False)
class adam:
    """Adam (Kingma & Ba, 2015) with bias correction; eps outside the square root, as in the
    paper, jax's example optimizers and optax."""
    lr: float
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    __repr__ = _repr

    def __post_init__(self):
        _set(self, "lr", number("lr (learning rate)", self.lr, positive=True, hint="try 0.01"))
        _set(self, "b1", number("b1 (decay of the first moment)", self.b1, least=0, hi=1,
                                 hint="0.9 is usual"))
        _set(self, "b2", number("b2 (decay of the second moment)", self.b2, least=0, hi=1,
                                 hint="0.999 is usual"))
        _set(self, "eps", number("eps", self.eps, positive=True, hint="1e-8 is usual"))

    def init(self, params):
        zeros = lambda: jax.tree.map(jnp.zeros_like, params)          # noqa: E731
        return AdamState(t=jnp.zeros((), jnp.int32), m=zeros(), v=zeros())

    def update(self, grads, state, params=None):
        del params                                                     # unused
        lr, b1, b2, eps = self.lr, self.b1, self.b2, self.eps
        t = state.t + 1
        m = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, state.m, grads)      # m_t
        v = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, state.v, grads)  # v_t

        def step(m, v):
            t_ = t.astype(m.dtype)
            m_hat = m / (1 - b1 ** t_)                 # m_hat = m_t / (1 - b1^t)
            v_hat = v / (1 - b2 ** t_)                 # v_hat = v_t / (1 - b2^t)
            return -lr * m_hat / (jnp.sqrt(v_hat) + eps)   # u_t = -lr m_hat / (sqrt(v_hat) + eps)
        return jax.tree.map(step, m, v), AdamState(t, m, v)


@dataclass(frozen=True, repr=False)
class weight_decay:
    """L2 regularisation as seed 2 writes it: g_w <- g_w + decay * w on every "w" leaf (never
    a "b"), then `opt` updates. With `sgd` that is seed 2's step, w -= lr (dL/dw + decay w);
    with `adam` it is Adam with L2 (the decay is rescaled like the gradient), not AdamW."""
    opt: Any
    decay: float

    def __post_init__(self):
        check_optimizer(self.opt, "opt (the optimizer to wrap)")
        _set(self, "decay", number("decay (the L2 factor)", self.decay, least=0,
                                   hint="seed 2 uses 0.001"))

    def init(self, params):
        return self.opt.init(params)

    def update(self, grads, state, params=None):
        if params is None:
            raise InputError("weight_decay needs the params: call update(grads, state, params)")
        paths = [path for path, _ in jax.tree.leaves_with_path(params)]
        if not any(map(_is_weight, paths)):
            raise InputError("weight_decay found no \"w\" leaf to decay in params (it decays "
                             "params[i][\"w\"] only); got leaves "
                             f"{[jax.tree_util.keystr(p) or '(one array)' for p in paths][:6]}")
        decay = self.decay
        grads = jax.tree.map_with_path(                               # g_w + decay w; g_b as is
            lambda path, g, p: g + decay * p if _is_weight(path) else g, grads, params)
        return self.opt.update(grads, state, params)

    def __repr__(self) -> str:
        return f"weight_decay({self.opt!r}, decay={self.decay!r})"


def check_optimizer(opt, name: str = "optimizer"):
    """Raise unless `opt` has callable `init` and `update` and can be hashed (a static
    argument of `jit`); return it."""
    if isinstance(opt, type):                   # optimizer=adam: the class, not one made from it
        raise InputTypeError(f"{name} must be an optimizer such as funcnn.optim.adam(lr=1e-3), "
                             f"got the class {opt.__name__} itself; call it with its settings, "
                             f"e.g. {name.split()[0]}=funcnn.optim.adam(lr=1e-3)")
    if not (callable(getattr(opt, "init", None)) and callable(getattr(opt, "update", None))):
        raise InputTypeError(f"{name} must be an optimizer such as funcnn.optim.adam(1e-3) (with "
                             f"init and update), got {type(opt).__name__} {opt!r}")
    try:
        hash(opt)
    except TypeError:
        raise InputTypeError(f"{name} must be hashable (it is a static argument of jit); build "
                             "it with funcnn.optim.sgd/momentum/adam, or Optimizer(init, update) "
                             "from two module-level functions") from None
    return opt
