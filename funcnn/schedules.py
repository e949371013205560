"""Learning-rate schedules, functions of the step count, written as optax's schedules are.

Contract: a schedule is called as `schedule(count) -> lr`, count an i32[] (traced inside the
compiled loop), lr a 0-d float array. `count` is the number of optimizer steps taken before
the step being taken, the count an optimizer keeps in its state: the first step uses
schedule(0), as in optax (its ScaleByScheduleState reads the count before incrementing it).
A schedule is a frozen dataclass, hashable and equal by value, so an optimizer holding one is
a static argument of `jit` that compiles once however often it is rebuilt; its repr reads like
the call. Any function of the step count is a schedule too (`lr=my_schedule`): give a
module-level function of jnp operations (`jnp.where`, not `if`: the count is traced); a lambda
works but is equal only to itself, so each new one compiles again.

    opt = funcnn.optim.adam(warmup_cosine_decay(0.0, 1e-3, warmup_steps=100, decay_steps=1000))
"""
from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from funcnn.checks import InputError, InputTypeError, integer, number, short_repr


def _repr(schedule) -> str:
    """`warmup_cosine_decay(init=0.0, peak=0.001, ...)`: the fields that differ from defaults."""
    shown = [f"{f.name}={getattr(schedule, f.name)!r}" for f in dataclasses.fields(schedule)
             if f.default is dataclasses.MISSING or getattr(schedule, f.name) != f.default]
    return f"{type(schedule).__name__}({', '.join(shown)})"


def _steps(count):
    """The count as the default float (float64 under jax_enable_x64: i32 / int is float32)."""
    return jnp.asarray(count).astype(jnp.result_type(float))


@dataclass(frozen=True, repr=False)
class constant:
    """lr_t = value at every step (optax's constant_schedule)."""
    value: float
    __repr__ = _repr

    def __post_init__(self):
        object.__setattr__(self, "value", number("value", self.value, positive=True))

    def __call__(self, count):
        return jnp.full(jnp.shape(count), self.value, jnp.result_type(float))


@dataclass(frozen=True, repr=False)
class exponential_decay:
    """lr_t = init * decay_rate ** (t / transition_steps), optax's exponential_decay (with
    transition_begin=0); `staircase=True` floors the exponent, so the rate drops once every
    transition_steps steps; `end` bounds it: a floor if decay_rate < 1, a ceiling if > 1."""
    init: float
    transition_steps: int
    decay_rate: float
    staircase: bool = False
    end: float | None = None
    __repr__ = _repr

    def __post_init__(self):
        _set = object.__setattr__
        _set(self, "init", number("init", self.init, positive=True))
        _set(self, "transition_steps", integer("transition_steps", self.transition_steps, 1))
        _set(self, "decay_rate", number("decay_rate", self.decay_rate, positive=True,
                                        hint="below 1 to decay, e.g. 0.5 halves the lr"))
        if not isinstance(self.staircase, bool):
            raise InputTypeError(f"staircase must be True or False, got {self.staircase!r}")
        if self.end is not None:
            _set(self, "end", number("end", self.end, least=0))

    def __call__(self, count):
        p = _steps(count) / self.transition_steps
        if self.staircase:
            p = jnp.floor(p)                                   # integer division of t
        lr = self.init * self.decay_rate ** p                  # init * rate^(t / steps)
        if self.end is not None:
            lr = (jnp.maximum if self.decay_rate < 1 else jnp.minimum)(lr, self.end)
        return lr


@dataclass(frozen=True, repr=False)
class warmup_cosine_decay:
    """optax's warmup_cosine_decay_schedule: linear warmup from `init` to `peak` over the first
    `warmup_steps` steps, then a cosine from `peak` to `end` until step `decay_steps`, then
    `end`. decay_steps counts the warmup too (as in optax): the cosine lasts decay_steps -
    warmup_steps steps. With W = warmup_steps, D = decay_steps, s = min(t - W, D - W):

        lr_t = init + (peak - init) t / W                                    t < W
        lr_t = peak ((1 - a) (1 + cos(pi s / (D - W))) / 2 + a),  a = end / peak,  t >= W
    """
    init: float
    peak: float
    warmup_steps: int
    decay_steps: int
    end: float = 0.0
    __repr__ = _repr

    def __post_init__(self):
        _set = object.__setattr__
        _set(self, "init", number("init", self.init, least=0, hint="0.0 is usual"))
        _set(self, "peak", number("peak", self.peak, positive=True, hint="e.g. 1e-3"))
        _set(self, "warmup_steps", integer("warmup_steps", self.warmup_steps, 0))
        _set(self, "decay_steps", integer("decay_steps", self.decay_steps, 1))
        _set(self, "end", number("end", self.end, least=0, hint="0.0 is usual"))
        if self.decay_steps <= self.warmup_steps:
            raise InputError(
                f"decay_steps must be > warmup_steps: it counts the warmup too, as optax's "
                f"warmup_cosine_decay_schedule does, so the cosine runs decay_steps - "
                f"warmup_steps steps; got decay_steps={self.decay_steps}, warmup_steps="
                f"{self.warmup_steps}; pass decay_steps=warmup_steps + the steps of the decay")

    def __call__(self, count):
        t, w, d = _steps(count), self.warmup_steps, self.decay_steps
        alpha = self.end / self.peak
        s = jnp.clip(t - w, 0, d - w)                          # steps into the cosine
        lr = self.peak * ((1 - alpha) * 0.5 * (1 + jnp.cos(jnp.pi * s / (d - w))) + alpha)
        if w == 0:
            return lr
        warm = self.init + (self.peak - self.init) * jnp.clip(t, 0, w) / w
        return jnp.where(t < w, warm, lr)


def check(name: str, lr, hint: str = ""):
    """`lr` as a positive float (funcnn.checks.number) or a schedule: a callable that can be
    hashed and that returns one number for an i32[] count (tried once with `jax.eval_shape`,
    nothing computed). Raises InputError / InputTypeError starting with `name` otherwise."""
    if isinstance(lr, type):
        raise InputTypeError(f"{name} must be a number or a schedule, got the class "
                             f"{lr.__name__} itself; call it with its settings, e.g. "
                             "funcnn.schedules.warmup_cosine_decay(0.0, 1e-3, 100, 1000)")
    if isinstance(lr, numbers.Real) or getattr(lr, "ndim", None) == 0:
        return number(name, lr, positive=True, hint=hint)
    if not callable(lr):
        raise InputTypeError(f"{name} must be a number or a schedule (a function of the step "
                             "count, e.g. funcnn.schedules.warmup_cosine_decay(0.0, 1e-3, 100, "
                             f"1000)), got {type(lr).__name__} {short_repr(lr)}")
    try:
        hash(lr)
    except TypeError:
        raise InputTypeError(f"{name} must be hashable (the optimizer holding it is a static "
                             "argument of jit); use a funcnn.schedules one or a module-level "
                             "function") from None
    try:
        out = jax.eval_shape(lr, jax.ShapeDtypeStruct((), jnp.int32))
    except Exception as e:                                     # noqa: BLE001 (the user's code)
        raise InputTypeError(f"{name}: the schedule {short_repr(lr)} failed on a traced i32 "
                             f"step count ({type(e).__name__}: {str(e)[:200]}); write it with "
                             "jnp operations (jnp.where, not if)") from None
    shape, dtype = getattr(out, "shape", None), getattr(out, "dtype", None)
    if shape != () or not (jnp.issubdtype(dtype, jnp.floating)
                           or jnp.issubdtype(dtype, jnp.integer)):
        raise InputError(f"{name}: the schedule {short_repr(lr)} must return one real number "
                         f"per step, got {short_repr(out)}")
    return lr
