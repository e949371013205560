"""Learning-rate schedules: each against its closed form (optax's formulas, written out here in
NumPy float64) at the steps that matter (warmup end, decay end, past the end), evaluated on a
traced count, hashable and equal by value, their checks; and a schedule inside `fit` that goes
on across a resumed run exactly as in one long run, bitwise."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnn as fn
from funcnn import optim, schedules as S

M, L = fn.math, fn.losses


def _at(schedule, steps):
    """The schedule at each step, as the compiled loop calls it: on a traced i32 count."""
    return np.asarray(jax.jit(jax.vmap(schedule))(jnp.asarray(steps, jnp.int32)))


def _cosine_np(t, init, peak, warmup, total, end):
    """optax's warmup_cosine_decay_schedule, as its documentation states it: linear from init
    to peak over `warmup` steps, then peak -> end along a half cosine until step `total`
    (decay_steps, which counts the warmup), end after it."""
    if t < warmup:
        return init + (peak - init) * t / warmup
    if t >= total:
        return end
    return end + (peak - end) * (1 + np.cos(np.pi * (t - warmup) / (total - warmup))) / 2


def test_warmup_cosine_decay_is_its_closed_form(x64):
    init, peak, warmup, total, end = 1e-4, 3e-3, 100, 1000, 3e-5
    s = S.warmup_cosine_decay(init, peak, warmup_steps=warmup, decay_steps=total, end=end)
    steps = [0, 1, 50, 99, 100, 101, 550, 999, 1000, 1001, 5000]
    got = _at(s, steps)
    want = [_cosine_np(t, init, peak, warmup, total, end) for t in steps]
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert got[0] == init and got[4] == peak                    # the start, the warmup's end
    np.testing.assert_allclose(got[6], (peak + end) / 2, rtol=1e-12)   # halfway down the cosine
    assert got[8] == got[9] == got[10] and abs(got[8] - end) < 1e-18   # the end, and past it


def test_warmup_cosine_decay_without_warmup_starts_at_the_peak(x64):
    s = S.warmup_cosine_decay(0.0, 0.1, warmup_steps=0, decay_steps=10)
    np.testing.assert_allclose(_at(s, [0, 5, 10, 11]), [0.1, 0.05, 0.0, 0.0], rtol=1e-12,
                               atol=1e-18)


def test_exponential_decay_is_its_closed_form(x64):
    steps = [0, 1, 9, 10, 11, 25, 100]
    smooth = S.exponential_decay(0.1, transition_steps=10, decay_rate=0.5)
    np.testing.assert_allclose(_at(smooth, steps), [0.1 * 0.5 ** (t / 10) for t in steps],
                               rtol=1e-12)
    stairs = S.exponential_decay(0.1, 10, 0.5, staircase=True)
    np.testing.assert_allclose(_at(stairs, steps), [0.1 * 0.5 ** (t // 10) for t in steps],
                               rtol=1e-12)
    floored = S.exponential_decay(0.1, 10, 0.5, end=0.02)
    np.testing.assert_allclose(_at(floored, steps),
                               [max(0.1 * 0.5 ** (t / 10), 0.02) for t in steps], rtol=1e-12)
    capped = S.exponential_decay(0.1, 10, 2.0, end=0.3)         # a growth, with a ceiling
    np.testing.assert_allclose(_at(capped, steps),
                               [min(0.1 * 2.0 ** (t / 10), 0.3) for t in steps], rtol=1e-12)


def test_constant_and_float32_by_default():
    got = _at(S.constant(0.25), [0, 7, 10 ** 6])
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, [0.25, 0.25, 0.25])
    assert _at(S.warmup_cosine_decay(0.0, 1e-3, 10, 100), [5]).dtype == np.float32


def test_schedules_are_hashable_equal_by_value_and_read_like_the_call(compiles):
    a = S.warmup_cosine_decay(0.0, 1e-3, warmup_steps=10, decay_steps=100)
    b = S.warmup_cosine_decay(0, 0.001, 10, 100)
    assert a == b and hash(a) == hash(b) and a is not b
    assert a != S.warmup_cosine_decay(0.0, 1e-3, 10, 101)
    assert optim.adam(a) == optim.adam(b) and hash(optim.adam(a)) == hash(optim.adam(b))
    assert repr(a) == "warmup_cosine_decay(init=0.0, peak=0.001, warmup_steps=10, decay_steps=100)"
    assert repr(S.exponential_decay(0.1, 10, 0.5, staircase=True)) == \
        "exponential_decay(init=0.1, transition_steps=10, decay_rate=0.5, staircase=True)"
    step = jax.jit(lambda opt, p, s: opt.update(p, s, p), static_argnums=0)
    p = {"w": jnp.ones((2, 2))}
    for sched in (a, b):                        # rebuilt, equal: one compile
        opt = optim.adam(sched)
        step(opt, p, opt.init(p))
    assert step._cache_size() == 1


@pytest.mark.parametrize("build, name", [
    (lambda: S.warmup_cosine_decay(0.0, 1e-3, warmup_steps=200, decay_steps=100), "decay_steps"),
    (lambda: S.warmup_cosine_decay(0.0, 1e-3, warmup_steps=100, decay_steps=100), "decay_steps"),
    (lambda: S.warmup_cosine_decay(-1e-3, 1e-3, 10, 100), "init"),
    (lambda: S.warmup_cosine_decay(0.0, 0.0, 10, 100), "peak"),
    (lambda: S.warmup_cosine_decay(0.0, 1e-3, -1, 100), "warmup_steps"),
    (lambda: S.warmup_cosine_decay(0.0, 1e-3, 10, 100, end=-1.0), "end"),
    (lambda: S.exponential_decay(0.1, 0, 0.5), "transition_steps"),
    (lambda: S.exponential_decay(0.1, 10, 0.0), "decay_rate"),
    (lambda: S.exponential_decay(0.1, 10, float("nan")), "decay_rate"),
    (lambda: S.constant(0.0), "value"),
])
def test_bad_settings_raise_naming_the_argument(build, name):
    with pytest.raises(ValueError, match=rf"^{name} "):
        build()


def test_a_warmup_longer_than_the_decay_says_decay_steps_counts_it():
    with pytest.raises(ValueError, match=r"^decay_steps must be > warmup_steps: it counts the "
                                         r"warmup too.*decay_steps=100, warmup_steps=200; pass "
                                         r"decay_steps=warmup_steps \+ the steps of the decay$"):
        S.warmup_cosine_decay(0.0, 1e-3, warmup_steps=200, decay_steps=100)


class _Unhashable:
    __hash__ = None

    def __call__(self, count):
        return 0.1


@pytest.mark.parametrize("build, message", [
    (lambda: S.warmup_cosine_decay(0.0, 1e-3, 10.0, 100), r"^warmup_steps must be an int"),
    (lambda: S.exponential_decay(0.1, 10, 0.5, staircase="yes"), r"^staircase must be True"),
    (lambda: optim.adam("0.1"), r"^lr \(learning rate\) must be a number or a schedule \(a "
                                r"function of the step count"),
    (lambda: optim.adam(S.constant), r"^lr \(learning rate\) must be a number or a schedule, "
                                     r"got the class constant itself; call it"),
    (lambda: optim.sgd(_Unhashable()), r"^lr \(learning rate\) must be hashable"),
    (lambda: optim.sgd(lambda a, b: a), r"^lr \(learning rate\): the schedule .* failed on a "
                                        r"traced i32 step count"),
])
def test_wrong_types_raise_naming_the_argument(build, message):
    with pytest.raises(TypeError, match=message):
        build()


def test_any_function_of_the_step_is_a_schedule():
    p = {"w": jnp.ones(3)}
    opt = optim.sgd(lambda count: 0.5 / (1.0 + count))              # 0.5, 0.25, 0.1667, ...
    state, step = opt.init(p), jax.jit(opt.update)
    for t in range(3):
        u, state = step(p, state, p)
        np.testing.assert_allclose(u["w"], -0.5 / (1 + t) * np.ones(3), rtol=1e-6)


# --- a schedule inside fit, across a resumed run ----------------------------------------------

def _setup():
    k_data, k_init = jax.random.split(jax.random.key(7))
    train = fn.data.gaussian_clusters(k_data, n_per_class=50)            # 100 rows
    net = fn.model.mlp([2, 8, 2], hidden=M.tanh, output=M.sigmoid, loss=L.mse)
    return net, fn.model.init(k_init, net), train


def _key():
    return jax.random.key(3)                    # the same key, a fresh object for each call


@pytest.mark.slow
def test_a_schedule_across_a_resumed_fit_is_bitwise_one_long_run():
    """4 epochs, then 3 more from the returned state, equal 7 epochs in one call: the count in
    adam's state carries the schedule on (10 steps an epoch: warmup to step 15, decay to 60)."""
    net, params, train = _setup()
    opt = optim.adam(S.warmup_cosine_decay(0.0, 0.05, warmup_steps=15, decay_steps=60, end=1e-3))
    kw = dict(batch_size=10, optimizer=opt, verbose=False, return_state=True)
    one, h_one, s_one = fn.train.fit(_key(), net, params, train, epochs=7, **kw)
    half, h_a, s_half = fn.train.fit(_key(), net, params, train, epochs=4, **kw)
    two, h_b, s_two = fn.train.fit(_key(), net, half, train, epochs=3, state=s_half, start_epoch=4,
                                   **kw)
    assert int(s_half.t) == 40 and int(s_one.t) == int(s_two.t) == 70
    for u, v in zip(jax.tree.leaves((one, s_one)), jax.tree.leaves((two, s_two)), strict=True):
        np.testing.assert_array_equal(u, v)
    np.testing.assert_array_equal(h_one["train_loss"],
                                  np.concatenate([h_a["train_loss"], h_b["train_loss"]]))
    # the comparison can fail: the schedule restarted at step 0 gives other params
    fresh, _, _ = fn.train.fit(_key(), net, half, train, epochs=3, start_epoch=4, **kw)
    assert not np.allclose(jax.tree.leaves(fresh)[0], jax.tree.leaves(one)[0], rtol=1e-4)
