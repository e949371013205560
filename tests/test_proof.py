"""The proof's edges: padding rows BatchNorm must not count, NaN that must stay NaN, losses that
cannot read a network's output, row weights, plain (x, y) batches, and layers of your own
whose shape() or vjp() disagree with what they compute. Each test failed on the code before
these checks (a silent wrong number, or a raw error from inside JAX or Python)."""
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnn as fn
from funcnn.checks import InputError, InputTypeError

L, M = fn.layers, fn.math


def _bn_net(image=False):
    if image:
        body = (L.Conv2D(3, 3), M.relu, L.BatchNorm(), L.Flatten(), L.Dense(4))
        return fn.model.network(L.serial(*body), (5, 5, 2), fn.losses.softmax_cross_entropy)
    return fn.model.network(L.serial(L.Dense(6), L.BatchNorm(), M.tanh, L.Dense(4)), (3,),
                            fn.losses.softmax_cross_entropy)


def _batch(net, n, seed=0, dtype=jnp.float64):
    kx, ky = jax.random.split(jax.random.key(seed))
    x = jax.random.normal(kx, (n, *net.input_shape), dtype)
    return fn.data.Dataset(x, fn.data.one_hot(jax.random.randint(ky, (n,), 0, 4), 4, dtype))


# --- BatchNorm counts only the rows of weight > 0 ------------------------------------------------

@pytest.mark.parametrize("image", [False, True])
@pytest.mark.slow
def test_batchnorm_ignores_padding_rows(image, x64):
    """64 real rows beside 32 padding rows of weight 0 (and values of their own) give the same
    loss, output, gradients and running statistics as the 64 rows alone (float64). Before,
    the padding counted in mu and var: the gradients moved by ~0.2."""
    net = _bn_net(image)
    params = fn.model.init(jax.random.key(1), net, jnp.float64)
    real, pad = _batch(net, 64, 2), _batch(net, 32, 3)
    padded = fn.data.Dataset(jnp.concatenate([real.x, 3.0 * pad.x + 1.0]),
                             jnp.concatenate([real.y, pad.y]))
    w = jnp.ones(96).at[64:].set(0.0)
    loss_a, g_a, out_a = fn.model.value_and_grads(net, params, real)
    loss_b, g_b, out_b = fn.model.value_and_grads(net, params, padded, w)
    np.testing.assert_allclose(loss_b, loss_a, rtol=1e-13)
    np.testing.assert_allclose(out_b[:64], out_a, rtol=1e-12, atol=1e-13)
    for a, b in zip(jax.tree.leaves(g_b), jax.tree.leaves(g_a), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-11, atol=1e-14)
    step_a, _ = fn.model.grad_step(net, params, real, 0.1)
    step_b, _ = fn.model.grad_step(net, params, padded, 0.1, w)
    i = 2 if image else 1                                     # BatchNorm's running statistics
    for name in ("mean", "var"):
        np.testing.assert_allclose(step_b[i][name], step_a[i][name], rtol=1e-12)
    # and the referee agrees with the hand gradient on the padded batch
    assert fn.gradcheck.gradcheck(net, params, padded, w).passed


@pytest.mark.slow
def test_fit_with_a_partial_last_batch_counts_only_its_real_rows(x64):
    """70 rows in batches of 32: the last batch holds 6 real rows and 26 of padding. fit's
    run equals a loop of grad_step over the same batches without the padding."""
    net = _bn_net()
    params = fn.model.init(jax.random.key(1), net, jnp.float64)
    train = _batch(net, 70, 4)
    got, _ = fn.train.fit(jax.random.key(5), net, params, train, epochs=1, lr=0.1,
                          batch_size=32, verbose=False)
    shuffle = fn.train.epoch_keys(jax.random.key(5), 1)[0]       # fit's first epoch's
    rows, w = fn.data.batches(shuffle, 70, 32, jnp.float64, 32)
    p = params
    for r, wr in zip(np.asarray(rows), np.asarray(w)):
        r = r[wr > 0]
        p, _ = fn.model.grad_step(net, p, fn.data.Dataset(train.x[r], train.y[r]), 0.1)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(p), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)


@pytest.mark.slow
def test_batchnorm_refuses_one_row_in_training():
    net = _bn_net()
    params = fn.model.init(jax.random.key(1), net)
    one = _batch(net, 1, dtype=jnp.float32)
    with pytest.raises(InputError, match="2 rows"):
        fn.model.grads(net, params, one)
    three = _batch(net, 3, dtype=jnp.float32)
    with pytest.raises(InputError, match="2 rows of weight > 0"):
        fn.model.grads(net, params, three, jnp.array([0.0, 1.0, 0.0]))
    with pytest.raises(InputError, match="batch of one"):
        fn.train.fit(jax.random.key(0), net, params, three, batch_size=1, verbose=False)
    with pytest.raises(InputError, match="batch of one"):            # 3 = 2 + a last 1
        fn.train.fit(jax.random.key(0), net, params, three, batch_size=2, verbose=False)
    fn.model.forward(net, params, one.x)                              # evaluation: fine


# --- NaN stays NaN ------------------------------------------------------------------------------

def test_relu_keeps_nan_in_value_and_gradient():
    z = jnp.array([[jnp.nan, -1.0, 0.0, 2.0]])
    a = M.relu.fn(z)
    assert np.isnan(a[0, 0]) and np.array_equal(a[0, 1:], [0.0, 0.0, 2.0])
    g = M.relu.vjp(z, a, jnp.ones_like(z))
    assert np.isnan(g[0, 0]) and np.array_equal(g[0, 1:], [0.0, 0.0, 1.0])
    for act in M.ACTIVATIONS.values():                       # every activation, both ways
        a = act.fn(z)
        assert np.isnan(a[0, 0]), act
        if act is not M.identity:                            # (identity's slope is 1 anywhere)
            assert np.isnan(act.vjp(z, a, jnp.ones_like(z))[0, 0]), act


@pytest.mark.slow
def test_nan_weights_raise_training_diverged():
    net = fn.model.network(L.serial(L.Dense(8), M.relu, L.Dense(3)), (4,),
                           fn.losses.softmax_cross_entropy)
    params = fn.model.init(jax.random.key(0), net)
    # hidden unit 0's weights NaN: before, relu turned its NaN into 0 and all looked well
    params = ({**params[0], "w": params[0]["w"].at[:, 0].set(jnp.nan)},) + params[1:]
    x = jax.random.normal(jax.random.key(1), (16, 4))
    train = fn.data.Dataset(x, fn.data.one_hot(jnp.arange(16) % 3, 3))
    with pytest.raises(fn.train.TrainingDiverged):
        fn.train.fit(jax.random.key(2), net, params, train, epochs=1, verbose=False)
    report = fn.gradcheck.gradcheck(net, params, train)
    assert not report.passed                                   # NaN never passes the referee


def test_forward_refuses_nan_in_x():
    net = fn.model.network(L.serial(L.Dense(3)), (4,), fn.losses.softmax_cross_entropy)
    params = fn.model.init(jax.random.key(0), net)
    x = np.ones((5, 4), np.float32)
    x[3, 2] = np.nan
    with pytest.raises(InputError, match=r"x holds NaN or Inf \(first in row 3\)"):
        fn.model.forward(net, params, x)
    x[3, 2] = np.inf
    with pytest.raises(InputError, match="NaN or Inf"):
        fn.model.forward(net, params, jnp.asarray(x))
    out = jax.jit(lambda x: fn.model.forward(net, params, x))(x)   # traced: not looked at
    assert np.isinf(out[3]).any() or np.isnan(out[3]).any()


# --- a loss that cannot read the output is refused when the network is built ---------------------

@pytest.mark.parametrize("build, match", [
    (lambda: fn.model.network(L.serial(L.Dense(1)), (3,), fn.losses.softmax_cross_entropy),
     "needs k >= 2 outputs"),
    (lambda: fn.model.network(L.serial(L.Dense(2)), (3,), fn.losses.binary_cross_entropy),
     "outputs in \\(0, 1\\).*end with a sigmoid"),
    (lambda: fn.model.network(L.serial(L.Dense(2), M.relu), (3,), fn.losses.binary_cross_entropy),
     "output activation is relu"),
    (lambda: fn.model.network(L.serial(L.Dense(2), M.softmax), (3,), fn.losses.nll),
     "log-probabilities.*end with log_softmax"),
    (lambda: fn.model.mlp([3, 1], M.relu, M.identity, fn.losses.softmax_cross_entropy),
     "needs k >= 2"),
    (lambda: fn.model.mlp([3, 4, 2], M.relu, M.identity, fn.losses.nll), "log_softmax"),
    (lambda: fn.model.network(L.serial(), (3,), fn.losses.mse), "empty serial"),
])
def test_a_loss_that_cannot_fit_the_output_is_refused(build, match):
    with pytest.raises(InputError, match=match):
        build()


def test_losses_that_fit_are_built():
    fn.model.network(L.serial(L.Dense(2), M.sigmoid), (3,), fn.losses.binary_cross_entropy)
    fn.model.network(L.serial(L.Dense(1, M.sigmoid)), (3,), fn.losses.binary_cross_entropy)
    fn.model.network(L.serial(L.Dense(2), M.log_softmax), (3,), fn.losses.nll)
    fn.model.mlp([3, 1], M.relu, M.identity, fn.losses.mse)


# --- row weights and plain batches -------------------------------------------------------------

@pytest.mark.parametrize("w, match", [
    (np.zeros(4, np.float32), "all zeros"),
    (np.array([1.0, -1.0, 1.0, 1.0], np.float32), "negative weight in row 1"),
    (np.array([1.0, np.nan, 1.0, 1.0], np.float32), "NaN or Inf in row 1"),
])
def test_row_weights_must_be_finite_non_negative_and_not_all_zero(w, match):
    net = fn.model.network(L.serial(L.Dense(2)), (3,), fn.losses.softmax_cross_entropy)
    params = fn.model.init(jax.random.key(0), net)
    batch = fn.data.Dataset(np.ones((4, 3), np.float32), np.eye(2, dtype=np.float32)[[0, 1, 0, 1]])
    for call in (lambda: fn.model.loss(net, params, batch, w),
                 lambda: fn.model.grad_step(net, params, batch, 0.1, w)):
        with pytest.raises(InputError, match=match):
            call()


@pytest.mark.slow
def test_a_plain_x_y_pair_is_a_batch():
    net = fn.model.network(L.serial(L.Dense(4), M.relu, L.Dense(2)), (3,),
                           fn.losses.softmax_cross_entropy)
    params = fn.model.init(jax.random.key(0), net)
    x = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)
    y = np.eye(2, dtype=np.float32)[np.arange(8) % 2]
    ds = fn.data.Dataset(x, y)
    assert fn.model.loss(net, params, (x, y)) == fn.model.loss(net, params, ds)
    for a, b in zip(jax.tree.leaves(fn.model.grads(net, params, (x, y))),
                    jax.tree.leaves(fn.model.grads(net, params, ds))):
        np.testing.assert_array_equal(a, b)
    fn.model.grad_step(net, params, [x, y], 0.1)
    p1, h1 = fn.train.fit(jax.random.key(1), net, params, (x, y), (x, y), epochs=2,
                          verbose=False)
    p2, h2 = fn.train.fit(jax.random.key(1), net, params, ds, ds, epochs=2, verbose=False)
    np.testing.assert_array_equal(h1["train_loss"], h2["train_loss"])
    assert fn.gradcheck.gradcheck(net, params, (x, y)).passed
    with pytest.raises(InputTypeError, match=r"Dataset\(x, y\) or an \(x, y\) pair"):
        fn.model.loss(net, params, (x, y, y))


# --- layers of your own ---------------------------------------------------------------------------

@dataclass(frozen=True)
class _Scale(fn.layers.Layer):
    """y = s * x, elementwise, p = {"s": f32[d]}; `bad` picks a mistake for the tests."""
    bad: str = ""
    independent_rows = True

    def shape(self, input_shape):
        return input_shape

    def init(self, key, input_shape, dtype):
        return {"s": jnp.ones(input_shape[-1], dtype)}

    def apply(self, p, x, train=False, key=None):
        y = p["s"][None, :] * x
        return (y[:, :-1] if self.bad == "apply" else y), x

    def vjp(self, p, cache, g):
        ds = (g * cache).sum(axis=0)
        if self.bad == "tree":
            return {"scale": ds}, g * p["s"][None, :]
        if self.bad == "shape":
            return {"s": ds[None, :]}, g * p["s"][None, :]
        return {"s": ds}, g * p["s"][None, :]


@dataclass(frozen=True)
class _Unhashable(fn.layers.Layer):
    sizes: list
    independent_rows = True

    def shape(self, input_shape):
        return input_shape

    def apply(self, p, x, train=False, key=None):
        return x, None


def test_a_layer_whose_apply_disagrees_with_its_shape_is_named_at_init():
    net = fn.model.network(L.serial(_Scale("apply"), L.Dense(2)), (3,),
                           fn.losses.softmax_cross_entropy)
    with pytest.raises(InputError, match=r"layer 0 \(_Scale.*shape\(\) says \(3,\)"):
        fn.model.init(jax.random.key(0), net)


def test_an_unhashable_layer_is_named_at_network():
    with pytest.raises(InputTypeError, match=r"layer 0 \(_Unhashable\) cannot be hashed"):
        fn.model.network(L.serial(_Unhashable([1, 2]), L.Dense(2)), (3,),
                         fn.losses.softmax_cross_entropy)


@pytest.mark.parametrize("bad, match", [("tree", "its vjp returned dL/dp as"),
                                        ("shape", r"dL/dp\['s'\] of shape \(1, 3\)")])
def test_a_vjp_of_the_wrong_tree_or_shape_never_moves_the_params(bad, match):
    """Before: grad_step returned params of another shape, and fit failed inside JAX."""
    net = fn.model.network(L.serial(_Scale(bad), L.Dense(2)), (3,),
                           fn.losses.softmax_cross_entropy)
    params = fn.model.init(jax.random.key(0), net)
    batch = fn.data.Dataset(np.ones((4, 3), np.float32), np.eye(2, dtype=np.float32)[[0, 1, 0, 1]])
    with pytest.raises(InputError, match=match):
        fn.model.grad_step(net, params, batch, 0.1)
    with pytest.raises(InputError, match=match):
        fn.train.fit(jax.random.key(0), net, params, batch, epochs=1, verbose=False)
    good = fn.model.network(L.serial(_Scale(), L.Dense(2)), (3,), fn.losses.softmax_cross_entropy)
    assert fn.gradcheck.gradcheck(good, params, batch).passed


@dataclass(frozen=True)
class _ForwardOnly(fn.layers.Layer):
    """A layer with no vjp: it evaluates, and training it is refused by name."""
    independent_rows = True

    def shape(self, input_shape):
        return input_shape

    def apply(self, p, x, train=False, key=None):
        return 2 * x, None


def test_a_layer_without_vjp_evaluates_and_is_refused_in_training():
    net = fn.model.network(L.serial(_ForwardOnly(), L.Dense(2)), (3,),
                           fn.losses.softmax_cross_entropy)
    params = fn.model.init(jax.random.key(0), net)
    batch = fn.data.Dataset(np.ones((4, 3), np.float32), np.eye(2, dtype=np.float32)[[0, 1, 0, 1]])
    assert fn.model.forward(net, params, batch.x).shape == (4, 2)
    with pytest.raises(InputTypeError, match=r"layer 0 \(_ForwardOnly.*has no vjp"):
        fn.model.grads(net, params, batch)
    with pytest.raises(InputTypeError, match="has no apply"):
        fn.model.network(L.serial(_NoApply()), (3,), fn.losses.mse)


@dataclass(frozen=True)
class _NoApply(fn.layers.Layer):
    def shape(self, input_shape):
        return input_shape
