"""Optimizers by hand, shaped like optax: sgd, momentum (and Nesterov), adam, adamw, rmsprop, L2
weight decay; clip_by_global_norm and chain; any of them with a learning-rate schedule.

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

A gradient transformation (`clip_by_global_norm`; one of your own: any hashable object with
`init`, `update` and a class attribute `gives_grads = True`) returns grads again, transformed,
with no minus sign. `chain(t1, ..., tk, opt)` feeds each one's output to the next, with the same
params; its last member, an optimizer, alone puts the minus sign on (optax's chain is the same
pipe, its scale_by_learning_rate last): `chain(clip_by_global_norm(1.0), adamw(3e-4))` clips
the grads, then AdamW steps along them. Its state is the tuple of its members' states. `chain`
refuses an optimizer anywhere but last; `check_optimizer` (so `fit`) a chain without one.

Every optimizer takes `lr` as a number or a schedule (`funcnn.schedules`, or a module-level
function of the step count). With a schedule the state holds the step count, an i32[] as in
optax's ScaleByScheduleState, and each step uses schedule(steps taken before it): the first
uses schedule(0), optax's convention. So the schedule runs inside the compiled loop and goes on
across `fit(..., state=, start_epoch=)`. With a number the state is what it always was: sgd's
(), momentum's and rmsprop's count None (no leaf); adam and adamw count anyway (AdamState.t).
"""
from __future__ import annotations

import dataclasses
import types
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from funcnn import schedules
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


def _shown(v) -> str:
    """repr, but a function by its name: lr=my_schedule, mask=decay_weights_only."""
    return v.__qualname__ if isinstance(v, types.FunctionType) else repr(v)


def _repr(opt) -> str:
    """`adam(lr=0.001)`: lr, then only the fields that differ from their defaults."""
    shown = [f"{f.name}={_shown(getattr(opt, f.name))}" for f in dataclasses.fields(opt)
             if f.default is dataclasses.MISSING or getattr(opt, f.name) != f.default]
    return f"{type(opt).__name__}({', '.join(shown)})"


def _is_weight(path) -> bool:
    """Is this leaf a dict entry named "w" (params[i]["w"]), not a "b"?"""
    return bool(path) and getattr(path[-1], "key", None) == "w"


def _check_lr(opt):
    _set(opt, "lr", schedules.check("lr (learning rate)", opt.lr, hint="try 0.01"))


def _scheduled(lr) -> bool:
    return not isinstance(lr, float)            # checked: a float or a schedule


def _count0(lr):       # a fresh step count where lr is a schedule, None (no leaf) where a number
    return jnp.zeros((), jnp.int32) if _scheduled(lr) else None


def _lr_at(lr, count):  # the lr of the step taken after `count` steps: schedule(count), or lr
    return jnp.asarray(lr(count)) if _scheduled(lr) else lr


class ScheduleState(NamedTuple):
    count: jax.Array   # i32[] steps taken so far; the next one uses lr = schedule(count)


# --- the optimizers: u = -lr (a direction), each leaf in its own dtype --------------------------

@dataclass(frozen=True, repr=False)
class sgd:
    """Gradient descent: u_t = -lr_t g_t. State: () for a number lr, ScheduleState(count) for
    a schedule."""
    lr: float
    __repr__ = _repr

    def __post_init__(self):
        _check_lr(self)

    def init(self, params):
        del params
        return ScheduleState(_count0(self.lr)) if _scheduled(self.lr) else ()

    def update(self, grads, state, params=None):
        del params                                                     # unused
        lr = _lr_at(self.lr, state.count if _scheduled(self.lr) else None)
        updates = jax.tree.map(lambda g: (-lr * g).astype(g.dtype), grads)   # u_t = -lr g_t
        return updates, ScheduleState(state.count + 1) if _scheduled(self.lr) else state


class MomentumState(NamedTuple):
    v: Params          # velocity, shaped like params: v_t = mu v_{t-1} + g_t, v_0 = 0
    count: jax.Array | None = None   # i32[] steps taken, with a schedule only


@dataclass(frozen=True, repr=False)
class momentum:
    """Heavy ball, as PyTorch and optax write it: v_t = mu v_{t-1} + g_t, u_t = -lr_t v_t.
    `nesterov=True` steps along the look-ahead gradient instead: u_t = -lr_t (g_t + mu v_t).
    (The form v_t = mu v_{t-1} - lr g_t, p += v_t is the same steps for a constant lr.)"""
    lr: float
    mu: float = 0.9
    nesterov: bool = False
    __repr__ = _repr

    def __post_init__(self):
        _check_lr(self)
        _set(self, "mu", number("mu (momentum)", self.mu, least=0, hi=1, hint="0.9 is usual"))
        if not isinstance(self.nesterov, bool):
            raise InputTypeError(f"nesterov must be True or False, got {self.nesterov!r}")

    def init(self, params):
        return MomentumState(jax.tree.map(jnp.zeros_like, params), _count0(self.lr))  # v_0 = 0

    def update(self, grads, state, params=None):
        del params                                                     # unused
        mu, lr = self.mu, _lr_at(self.lr, state.count)
        v = jax.tree.map(lambda v, g: mu * v + g, state.v, grads)      # v_t = mu v_{t-1} + g_t
        step = jax.tree.map(lambda v, g: g + mu * v, v, grads) if self.nesterov else v  # g+mu v
        updates = jax.tree.map(lambda s: (-lr * s).astype(s.dtype), step)   # u_t = -lr step
        return updates, MomentumState(v, None if state.count is None else state.count + 1)


class AdamState(NamedTuple):
    t: jax.Array       # i32[] steps taken so far (a schedule's count too)
    m: Params          # first moment (mean of g), shaped like params
    v: Params          # second moment (mean of g^2), shaped like params


@dataclass(frozen=True, repr=False)
class adam:
    """Adam (Kingma & Ba, 2015) with bias correction; eps outside the square root, as in the
    paper, PyTorch's Adam, jax's example optimizers and optax's adam:
    m_t = b1 m + (1-b1) g, v_t = b2 v + (1-b2) g^2, u_t = -lr_t m_hat / (sqrt(v_hat) + eps)."""
    lr: float
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    __repr__ = _repr

    def __post_init__(self):
        _check_lr(self)
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
        return self._step(grads, state)

    def _step(self, grads, state, params=None, decays=None):
        """Adam's step; with `decays` (a pytree of bools), AdamW's on the leaves it marks."""
        b1, b2, eps, wd = self.b1, self.b2, self.eps, getattr(self, "weight_decay", 0.0)
        lr, t = _lr_at(self.lr, state.t), state.t + 1             # lr at the t-1 steps taken
        m = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, state.m, grads)      # m_t
        v = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, state.v, grads)  # v_t

        def step(m, v, p=None, decay=False):
            t_ = t.astype(m.dtype)
            m_hat = m / (1 - b1 ** t_)                 # m_hat = m_t / (1 - b1^t)
            v_hat = v / (1 - b2 ** t_)                 # v_hat = v_t / (1 - b2^t)
            if not decay:                              # u_t = -lr m_hat / (sqrt(v_hat) + eps)
                return (-lr * m_hat / (jnp.sqrt(v_hat) + eps)).astype(m.dtype)
            return (-lr * (m_hat / (jnp.sqrt(v_hat) + eps) + wd * p)).astype(m.dtype)  # AdamW
        decayed = () if decays is None else (params, decays)
        return jax.tree.map(step, m, v, *decayed), AdamState(t, m, v)


def decay_weights_only(params):
    """A mask for adamw: True on every leaf of 2 or more dimensions (weight matrices,
    convolution kernels, embedding tables), False on vectors (biases, BatchNorm's gamma and
    beta): nanoGPT's rule (model.py, configure_optimizers). `adamw(lr, mask=decay_weights_only)`."""
    return jax.tree.map(lambda p: jnp.ndim(p) >= 2, params)


_BOOLS = (bool, np.bool_)     # a mask's leaves: True or False (a traced one holds no value yet)


@dataclass(frozen=True)
class _TreeMask:
    """A pytree of booleans held hashable (its structure, its leaves); called, it is that
    pytree again whatever the params."""
    tree: Any                  # a jax treedef
    leaves: tuple

    def __call__(self, params=None):
        return jax.tree.unflatten(self.tree, self.leaves)

    def __repr__(self) -> str:
        return repr(self())


@dataclass(frozen=True, repr=False)
class adamw(adam):
    """AdamW (Loshchilov & Hutter, 2019), optax's adamw and PyTorch's AdamW: Adam plus a decay of
    the params themselves, not of the gradient (decoupled), times lr_t as in optax:
    u_t = -lr_t (m_hat / (sqrt(v_hat) + eps) + weight_decay p) on the leaves `mask` picks, the
    Adam step alone on the others (PyTorch: p <- p - lr wd p, then Adam's step). weight_decay:
    optax's default 1e-4 (PyTorch's 1e-2). mask: None decays every leaf (optax's default); a
    pytree of True/False shaped like the params; or a function params -> one, e.g.
    `mask=decay_weights_only`: matrices and kernels, not biases or norm scales (nanoGPT). The
    state is adam's."""
    weight_decay: float = 1e-4
    mask: Any = None

    def __post_init__(self):
        super().__post_init__()
        _set(self, "weight_decay", number("weight_decay", self.weight_decay, least=0,
                                          hint="1e-4 (optax) to 0.1 (nanoGPT) are usual"))
        if self.mask is None or callable(self.mask):      # a function: module-level, hashable
            return
        leaves, tree = jax.tree.flatten(self.mask)
        if not all(isinstance(b, _BOOLS) for b in leaves):
            raise InputTypeError(f"mask must be a pytree of True/False, one per leaf of the "
                                 f"params, or a function params -> such a pytree (e.g. funcnn."
                                 f"optim.decay_weights_only); got leaves {leaves[:6]}")
        _set(self, "mask", _TreeMask(tree, tuple(bool(b) for b in leaves)))

    def _decays(self, params):
        """The mask as a pytree of Python bools shaped like params (True: this leaf decays)."""
        if params is None:
            raise InputError("adamw needs the params: call update(grads, state, params)")
        if self.mask is None:
            return jax.tree.map(lambda p: True, params)
        decays = self.mask(params)
        got, want = jax.tree.structure(decays), jax.tree.structure(params)
        if got != want or not all(isinstance(b, _BOOLS) for b in jax.tree.leaves(decays)):
            raise InputError(f"mask does not fit the params: give one True/False per leaf, "
                             f"shaped like the params ({want}), or mask=funcnn.optim."
                             f"decay_weights_only; got {got}, leaves {jax.tree.leaves(decays)[:4]}")
        return jax.tree.map(bool, decays)

    def init(self, params):
        self._decays(params)                    # a mask that does not fit fails here, early
        return super().init(params)

    def update(self, grads, state, params=None):
        return self._step(grads, state, params, self._decays(params))


class RmsPropState(NamedTuple):
    nu: Params         # mean square of g, shaped like params: nu_t = decay nu + (1-decay) g^2
    count: jax.Array | None = None   # i32[] steps taken, with a schedule only


@dataclass(frozen=True, repr=False)
class rmsprop:
    """RMSprop (Tieleman & Hinton, 2012) as optax's rmsprop writes it: nu_0 = 0,
    nu_t = decay nu_{t-1} + (1 - decay) g_t^2, u_t = -lr_t g_t / sqrt(nu_t + eps), eps inside
    the root. PyTorch's RMSprop (nu_0 = 0 too) puts it outside, g / (sqrt(nu) + eps), and calls
    decay alpha, 0.99 by default: rmsprop(lr, decay=0.99, eps_in_sqrt=False) is its step."""
    lr: float
    decay: float = 0.9
    eps: float = 1e-8
    eps_in_sqrt: bool = True
    __repr__ = _repr

    def __post_init__(self):
        _check_lr(self)
        _set(self, "decay", number("decay (of the mean square)", self.decay, least=0, hi=1,
                                   hint="0.9 (optax) or 0.99 (PyTorch) are usual"))
        _set(self, "eps", number("eps", self.eps, positive=True, hint="1e-8 is usual"))
        if not isinstance(self.eps_in_sqrt, bool):
            raise InputTypeError(f"eps_in_sqrt must be True or False, got {self.eps_in_sqrt!r}")

    def init(self, params):
        return RmsPropState(jax.tree.map(jnp.zeros_like, params), _count0(self.lr))

    def update(self, grads, state, params=None):
        del params                                                     # unused
        decay, eps, lr = self.decay, self.eps, _lr_at(self.lr, state.count)
        nu = jax.tree.map(lambda n, g: decay * n + (1 - decay) * g * g, state.nu, grads)

        def step(g, n):
            scale = jnp.sqrt(n + eps) if self.eps_in_sqrt else jnp.sqrt(n) + eps
            return (-lr * g / scale).astype(g.dtype)              # u_t = -lr g / scale
        count = None if state.count is None else state.count + 1
        return jax.tree.map(step, grads, nu), RmsPropState(nu, count)


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


# --- gradient transformations and chains -------------------------------------------------------

@dataclass(frozen=True, repr=False)
class clip_by_global_norm:
    """A gradient transformation (grads in, grads out, no minus sign): every leaf scaled by
    min(1, max_norm / ||g||), ||g|| the norm of all the leaves as one vector, as optax's
    clip_by_global_norm writes it: g if ||g|| < max_norm, else g / ||g|| * max_norm (PyTorch's
    clip_grad_norm_ adds 1e-6 to ||g||). State: (). Put it before an optimizer in a `chain`."""
    max_norm: float
    gives_grads = True
    __repr__ = _repr

    def __post_init__(self):
        _set(self, "max_norm", number("max_norm", self.max_norm, positive=True,
                                      hint="1.0 is usual (nanoGPT, PyTorch recipes)"))

    def init(self, params):
        del params
        return ()

    def update(self, grads, state, params=None):
        del params                                                     # unused
        norm = jnp.sqrt(sum(jnp.sum(g * g) for g in jax.tree.leaves(grads)))   # ||g||
        clipped = lambda g: jnp.where(norm < self.max_norm, g,         # noqa: E731
                                      g / norm.astype(g.dtype) * self.max_norm)
        return jax.tree.map(clipped, grads), state


def _gives_grads(t) -> bool:
    """Is `t` a gradient transformation (its output grads again, no minus sign)?"""
    return bool(getattr(t, "gives_grads", False))


@dataclass(frozen=True, init=False, repr=False)
class chain:
    """Transformations applied in order, each to the previous one's output, all with the same
    params: chain(clip_by_global_norm(1.0), adamw(3e-4)). Every member but the last must be a
    gradient transformation; the last is the optimizer that puts the minus sign on (or another
    transformation: then the chain is one too, to sit inside a longer chain). The state is the
    tuple of the members' states, in order."""
    transformations: tuple

    def __init__(self, *transformations):
        if not transformations:
            raise InputError("transformations: chain needs at least one, e.g. "
                             "chain(clip_by_global_norm(1.0), adam(1e-3))")
        for i, t in enumerate(transformations):
            check_optimizer(t, f"transformations[{i}]", grads_ok=True)
            if i < len(transformations) - 1 and not _gives_grads(t):
                raise InputError(f"transformations[{i}] ({t!r}) is an optimizer: its updates "
                                 "carry the minus sign, so it must come last; e.g. "
                                 "chain(clip_by_global_norm(1.0), adam(1e-3))")
        _set(self, "transformations", tuple(transformations))

    @property
    def gives_grads(self) -> bool:
        return _gives_grads(self.transformations[-1])

    def init(self, params):
        return tuple(t.init(params) for t in self.transformations)

    def update(self, grads, state, params=None):
        states = []
        for t, s in zip(self.transformations, state, strict=True):
            grads, s = t.update(grads, s, params)          # grads, then the last's updates
            states.append(s)
        return grads, tuple(states)

    def __repr__(self) -> str:
        return f"chain({', '.join(map(repr, self.transformations))})"


def check_optimizer(opt, name: str = "optimizer", grads_ok: bool = False):
    """Raise unless `opt` has callable `init` and `update`, can be hashed (a static argument
    of `jit`) and, unless `grads_ok`, puts the minus sign on (is no gradient transformation
    alone); return it."""
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
                             "it with funcnn.optim's optimizers, or Optimizer(init, update) "
                             "from two module-level functions") from None
    if not grads_ok and _gives_grads(opt):
        raise InputTypeError(f"{name} is a gradient transformation ({opt!r}): it returns grads "
                             "with no minus sign, so p + u would climb the loss; end it with an "
                             "optimizer: chain(clip_by_global_norm(1.0), adam(1e-3))")
    return opt
