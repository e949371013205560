"""Layers: each VJP against jax.grad (float64, 1e-9; float32 against the float64 truth, within
the rounding bound of conftest.py), the dot-product test and finite differences, dropout's
statistics, BatchNorm's two modes, composition, and errors that name the layer before anything
compiles."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnn as fn
from funcnn.checks import InputError

L, M = fn.layers, fn.math
check = fn.gradcheck.check_layer


def _net(*layers, input_shape, loss=fn.losses.softmax_cross_entropy):
    return fn.model.network(L.serial(*layers), input_shape=input_shape, loss=loss)


def _batch(key, n, d, k, dtype=jnp.float32):
    k_x, k_y = jax.random.split(key)
    x = jax.random.uniform(k_x, (n, d), dtype)
    return fn.data.Dataset(x, fn.data.one_hot(jax.random.randint(k_y, (n,), 0, k), k, dtype))


# --- every layer's VJP against jax.vjp, alone ---------------------------------------------------

CONVS = list(itertools.product([(1, 1), (3, 3), (2, 3)], [1, 2, (2, 1)],
                               ["SAME", "VALID", ((1, 0), (2, 1))]))


@pytest.mark.parametrize("formulation", ["patches", "conv"])
@pytest.mark.parametrize("kernel, stride, padding", CONVS, ids=str)
@pytest.mark.slow
def test_conv_vjp_matches_autodiff_float64(kernel, stride, padding, formulation):
    conv = L.Conv2D(4, kernel, stride=stride, padding=padding, formulation=formulation)
    report = check(conv, (7, 9, 3))
    assert report.dtype == "float64" and report.worst < 1e-9, report
    assert set(report.errors) == {"['b']", "['w']", "dx"}


@pytest.mark.parametrize("kernel, stride, padding", CONVS[::4], ids=str)
@pytest.mark.slow
def test_both_conv_formulations_agree(kernel, stride, padding, x64):
    """Patches (the CPU's choice) and XLA's convolution (a GPU's): the same y, dW, db, dx."""
    convs = [L.Conv2D(4, kernel, stride=stride, padding=padding, formulation=f)
             for f in ("patches", "conv")]
    p = convs[0].init(jax.random.key(0), (7, 9, 3), jnp.float64)
    x = jax.random.normal(jax.random.key(1), (2, 7, 9, 3), jnp.float64)
    (ya, ca), (yb, cb) = (c.apply(p, x) for c in convs)
    g = jax.random.normal(jax.random.key(2), ya.shape, jnp.float64)
    np.testing.assert_allclose(ya, yb, rtol=1e-12, atol=1e-13)
    for u, v in zip(jax.tree.leaves(convs[0].vjp(p, ca, g)), jax.tree.leaves(convs[1].vjp(p, cb, g))):
        np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-13)
    auto = L.Conv2D(4, kernel, stride=stride, padding=padding)
    assert auto._as(3) == ("conv" if jax.default_backend() == "gpu" else "patches")


# Winograd's F(2x2, 3x3): 3x3 kernels at stride 1 only; odd and even sizes (a tile row of
# zeros more), every padding kind, one that crops g (top 3 > 2) and one input channel
WINOGRAD = [((7, 9, 3), "SAME"), ((6, 8, 2), "SAME"), ((8, 7, 3), "VALID"),
            ((5, 6, 2), ((1, 0), (2, 1))), ((4, 5, 1), ((3, 2), (0, 3))), ((3, 3, 1), "VALID")]


@pytest.mark.parametrize("shape, padding", WINOGRAD, ids=str)
@pytest.mark.slow
def test_winograd_vjp_matches_autodiff_float64(shape, padding):
    report = check(L.Conv2D(4, 3, padding=padding, formulation="winograd"), shape)
    assert report.dtype == "float64" and report.worst < 1e-9, report
    assert set(report.errors) == {"['b']", "['w']", "dx"}


@pytest.mark.parametrize("shape, padding", WINOGRAD, ids=str)
@pytest.mark.slow
def test_winograd_gives_the_patches_numbers(shape, padding, x64):
    """The same y, dW, db, dx as the patch product, in float64 to 1e-12."""
    convs = [L.Conv2D(4, 3, padding=padding, formulation=f) for f in ("patches", "winograd")]
    p = convs[0].init(jax.random.key(0), shape, jnp.float64)
    x = jax.random.normal(jax.random.key(1), (2, *shape), jnp.float64)
    (ya, ca), (yb, cb) = (c.apply(p, x) for c in convs)
    g = jax.random.normal(jax.random.key(2), ya.shape, jnp.float64)
    np.testing.assert_allclose(yb, ya, rtol=1e-12, atol=1e-13)
    for u, v in zip(jax.tree.leaves(convs[1].vjp(p, cb, g)), jax.tree.leaves(convs[0].vjp(p, ca, g))):
        np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-13)


@pytest.mark.slow
def test_winograd_float32_close_to_patches(x64, float32_errors, float32_bound, to64):
    """float32: y, dW, db and dx of both formulations against the float64 truth (the patch
    product in float64 on the same numbers), each within the rounding bound of its longest sum
    (4 rows of 14x14x8 into 16 filters): y sums 3x3x8 products, dW and db 4x14x14 positions, dx
    16 filters and then 9 windows; Winograd's transforms add 22 terms (input 4, kernel 9,
    output 9)."""
    convs = [L.Conv2D(16, 3, formulation=f) for f in ("patches", "winograd")]
    p = convs[0].init(jax.random.key(0), (14, 14, 8), jnp.float32)
    x = jax.random.normal(jax.random.key(1), (4, 14, 14, 8), jnp.float32)
    g = jax.random.normal(jax.random.key(2), (4, 14, 14, 16), jnp.float32)
    y, cache = convs[0].apply(to64(p), to64(x))
    dp, dx = convs[0].vjp(to64(p), cache, to64(g))
    truth = {"y": y, "w": dp["w"], "b": dp["b"], "dx": dx}
    terms = {"y": 3 * 3 * 8, "w": 4 * 14 * 14, "b": 4 * 14 * 14, "dx": 16 + 9}
    for conv, extra in zip(convs, (0, 22), strict=True):
        y, cache = conv.apply(p, x)
        dp, dx = conv.vjp(p, cache, g)
        for name, got in {"y": y, "w": dp["w"], "b": dp["b"], "dx": dx}.items():
            error = float32_errors(got, truth[name])[""]
            assert error < float32_bound(terms[name] + extra), (conv.formulation, name, error)


@pytest.mark.parametrize("kernel, stride, c_in, cpu", [
    (3, 1, 32, "winograd"), (3, 1, 64, "winograd"), (3, 1, 31, "patches"), (3, 2, 64, "patches"),
    (5, 1, 64, "patches"), ((3, 1), 1, 64, "patches")])
def test_auto_formulation(kernel, stride, c_in, cpu):
    """'auto': XLA's convolution on a GPU; on a CPU, Winograd for a 3x3 stride-1 kernel on
    WINOGRAD_MIN_CHANNELS (32) input channels or more, else the patch product."""
    assert fn.layers.conv.WINOGRAD_MIN_CHANNELS == 32
    want = "conv" if jax.default_backend() == "gpu" else cpu
    assert L.Conv2D(8, kernel, stride=stride)._as(c_in) == want


@pytest.mark.parametrize("kernel, stride", [(5, 1), (3, 2), ((3, 1), 1)])
def test_winograd_needs_3x3_stride_1(kernel, stride):
    with pytest.raises(InputError, match="winograd.*3x3 kernel at stride 1.*'patches'"):
        L.Conv2D(4, kernel, stride=stride, formulation="winograd")


@pytest.mark.parametrize("layer, shape", [
    (L.MaxPool2D(2), (6, 6, 2)), (L.MaxPool2D(3, stride=2), (7, 9, 2)),
    (L.MaxPool2D((2, 3), stride=(1, 2), padding="SAME"), (5, 7, 2)),
    (L.AvgPool2D(2), (6, 6, 2)), (L.AvgPool2D(3, stride=2, padding="SAME"), (7, 7, 3)),
    # tiling windows (stride = window) take the views path: rows left over, padding, 2x3
    (L.MaxPool2D(2), (7, 7, 2)), (L.MaxPool2D(2, padding="SAME"), (5, 7, 2)),
    (L.MaxPool2D((2, 3)), (6, 7, 2)), (L.AvgPool2D(2, padding="SAME"), (5, 5, 2)),
    (L.AvgPool2D((3, 2)), (7, 5, 2)),
    (L.BatchNorm(), (5, 5, 3)), (L.BatchNorm(), (6,)), (L.LayerNorm(), (4, 6)),
    (L.LayerNorm(), (3, 3, 5)), (L.Dropout(0.3), (10,)), (L.Flatten(), (3, 4, 2)),
    (L.Reshape((4, -1)), (12,)), (L.Dense(5, M.tanh), (7,)),
    (L.Residual(L.serial(L.Dense(5, M.tanh), L.Dense(5))), (5,)),
    (L.Residual(L.serial(L.Conv2D(3, 3), L.BatchNorm(), M.relu)), (5, 5, 3)),
    (L.serial(L.serial(L.Conv2D(4, 3, stride=2), M.relu), L.serial(L.Flatten(), L.Dense(3))),
     (7, 7, 2)),
    (M.softmax, (6,)), (M.sigmoid, (4, 4, 2)),
], ids=repr)
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.slow
def test_layer_vjp_matches_autodiff_float64(layer, shape, train):
    report = check(layer, shape, n=4, train=train)
    assert report.worst < 1e-9, report


@pytest.mark.parametrize("layer, shape, terms", [
    (L.Conv2D(8, 3, stride=2), (9, 9, 3), 3 * 5 * 5 + 1),  # dW: 3 rows x 5x5 positions
    (L.BatchNorm(), (6, 6, 4), 4 * 3 * 6 * 6 + 10),         # mean, var; the VJP's 2 sums
    (L.MaxPool2D(2), (8, 8, 3), 1),                          # g routed: no sum at all
], ids=repr)
@pytest.mark.slow
def test_float32_tolerance(layer, shape, terms, x64, float32_errors, float32_bound, to64):
    """A layer's float32 VJP against jax.vjp of its apply in float64 on the same numbers,
    within the rounding bound of its longest chain of sums (`terms`, 3 rows)."""
    k_p, k_x, k_g = jax.random.split(jax.random.key(0), 3)
    p = layer.init(k_p, shape, jnp.float32)
    x = jax.random.normal(k_x, (3, *shape), jnp.float32)
    y, cache = layer.apply(p, x, True)
    g = jax.random.normal(k_g, y.shape, jnp.float32)
    _, pull = jax.vjp(lambda p, x: layer.apply(p, x, True)[0], to64(p), to64(x))
    errors = float32_errors(layer.vjp(p, cache, g), pull(to64(g)))
    assert max(errors.values()) < float32_bound(terms), errors


@pytest.mark.slow
def test_max_pool_ties_go_to_the_first_element(x64):
    """Ties planted everywhere (values from {0, 1, 2}): the gradient of each window goes to its
    first largest element, row-major, and jax.grad of the forward agrees."""
    x = jax.random.randint(jax.random.key(3), (2, 6, 6, 3), 0, 3).astype(jnp.float64)
    for pool, shape in [(L.MaxPool2D(2), (6, 6, 3)), (L.MaxPool2D(3, stride=1), (6, 6, 3))]:
        report = check(pool, shape, x=x)
        assert report.worst < 1e-12, report
    window = jnp.ones((1, 2, 2, 1))                            # four equal values
    y, cache = L.MaxPool2D(2).apply((), window)
    _, dx = L.MaxPool2D(2).vjp((), cache, jnp.ones_like(y))
    np.testing.assert_array_equal(dx[0, :, :, 0], [[1.0, 0.0], [0.0, 0.0]])


@pytest.mark.parametrize("pool", [L.MaxPool2D(2), L.MaxPool2D((2, 3), padding="SAME"),
                                  L.AvgPool2D(2), L.AvgPool2D((3, 2), padding="SAME")], ids=repr)
@pytest.mark.slow
def test_tiling_pools_views_equal_patches(pool, x64):
    """A pool whose windows tile the input computes by strided views; the patches path (kept for
    overlapping windows) must give the same y and dL/dx, ties and -inf-padding included."""
    class ByPatches(type(pool)):
        def _tiles(self):
            return False
    slow = ByPatches(pool.window, pool.stride, pool.padding)
    x = jax.random.randint(jax.random.key(4), (2, 7, 9, 3), 0, 3).astype(jnp.float64)
    (y, cache), (y_slow, cache_slow) = pool.apply((), x), slow.apply((), x)
    g = jax.random.normal(jax.random.key(5), y.shape, jnp.float64)
    np.testing.assert_array_equal(y, y_slow)
    np.testing.assert_array_equal(pool.vjp((), cache, g)[1], slow.vjp((), cache_slow, g)[1])


@pytest.mark.slow
def test_gradcheck_bites_on_a_wrong_layer_vjp():
    class Wrong(L.Conv2D):
        def vjp(self, p, cache, g):
            dp, dx = super().vjp(p, cache, g)
            return dp, 2 * dx
    report = check(Wrong(4, 3), (5, 5, 2))
    assert not report.passed and report.errors["dx"] > 0.1 and report.errors["['w']"] < 1e-9


# --- independent proofs: the dot-product test and finite differences ----------------------------

@pytest.mark.slow
def test_conv_passes_the_dot_product_test(x64):
    """x -> conv(x) (no bias) is linear, so <conv(x), g> = <x, vjp(g)> for every x and g."""
    for conv, shape in [(L.Conv2D(5, 3, stride=2), (9, 8, 3)),
                        (L.Conv2D(4, (2, 3), stride=(2, 1), padding=((1, 0), (2, 1))), (7, 6, 2))]:
        k_p, k_x, k_g = jax.random.split(jax.random.key(7), 3)
        p = conv.init(k_p, shape, jnp.float64)
        p = {"w": p["w"], "b": jnp.zeros_like(p["b"])}
        x = jax.random.normal(k_x, (2, *shape), jnp.float64)
        y, cache = conv.apply(p, x)
        g = jax.random.normal(k_g, y.shape, jnp.float64)
        _, dx = conv.vjp(p, cache, g)
        assert float(jnp.vdot(y, g)) == pytest.approx(float(jnp.vdot(x, dx)), rel=1e-12)
        dp, _ = conv.vjp(p, cache, g)           # and linear in w: <conv_w(x), g> = <w, dW>
        assert float(jnp.vdot(y, g)) == pytest.approx(float(jnp.vdot(p["w"], dp["w"])), rel=1e-12)


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.slow
def test_batchnorm_matches_finite_differences(x64, train):
    """Central differences of <y, g> along random directions, for x and for gamma."""
    bn = L.BatchNorm()
    k_p, k_x, k_g, k_v, k_m = jax.random.split(jax.random.key(11), 5)
    shape = (4, 4, 3)
    p = bn.init(k_p, shape, jnp.float64)
    p = {**p, "gamma": 1 + jax.random.uniform(k_p, (3,), jnp.float64),
         "mean": jax.random.normal(k_m, (3,), jnp.float64), "var": jnp.full(3, 2.0)}
    x = jax.random.normal(k_x, (5, *shape), jnp.float64)
    y, cache = bn.apply(p, x, train)
    g = jax.random.normal(k_g, y.shape, jnp.float64)
    dp, dx = bn.vjp(p, cache, g)
    f = lambda p, x: float(jnp.vdot(bn.apply(p, x, train)[0], g))
    v = jax.random.normal(k_v, x.shape, jnp.float64)
    eps = 1e-5
    numeric = (f(p, x + eps * v) - f(p, x - eps * v)) / (2 * eps)
    assert numeric == pytest.approx(float(jnp.vdot(dx, v)), rel=1e-7)
    u = jnp.array([0.3, -1.0, 0.7])
    numeric = (f({**p, "gamma": p["gamma"] + eps * u}, x)
               - f({**p, "gamma": p["gamma"] - eps * u}, x)) / (2 * eps)
    assert numeric == pytest.approx(float(jnp.vdot(dp["gamma"], u)), rel=1e-7)


# --- dropout -----------------------------------------------------------------------------------

@pytest.mark.parametrize("rate", [0.1, 0.3, 0.5, 0.8])
@pytest.mark.slow
def test_dropout_drops_about_rate_of_the_units(rate):
    x = jnp.ones((200, 500))
    y, _ = L.Dropout(rate).apply((), x, True, jax.random.key(4))
    dropped = float((y == 0).mean())
    # 100,000 units: the fraction's std is below 0.0016; a keep-probability (1 - rate) fails
    assert abs(dropped - rate) < 0.01, dropped
    kept = y[y != 0]
    np.testing.assert_allclose(kept, 1 / (1 - rate), rtol=1e-6)    # kept units scaled
    assert float(y.mean()) == pytest.approx(1.0, abs=0.03)          # the mean is kept
    again, _ = L.Dropout(rate).apply((), x, True, jax.random.key(4))
    np.testing.assert_array_equal(again, y)                         # same key, same mask
    evaluated, _ = L.Dropout(rate).apply((), x, False, None)
    assert evaluated is x                                           # evaluation: identity


@pytest.mark.slow
def test_a_network_with_dropout_needs_a_key_to_train():
    net = _net(L.Dense(4, M.relu), L.Dropout(0.5), L.Dense(2), input_shape=(3,))
    params = fn.model.init(jax.random.key(0), net)
    batch = _batch(jax.random.key(1), 6, 3, 2)
    with pytest.raises(ValueError, match="Dropout.*key="):
        fn.model.grads(net, params, batch)
    out = fn.model.forward(net, params, batch.x)                    # evaluation needs none
    assert out.shape == (6, 2)
    a = fn.model.grads(net, params, batch, key=jax.random.key(2))
    b = fn.model.grads(net, params, batch, key=jax.random.key(2))
    c = fn.model.grads(net, params, batch, key=jax.random.key(3))
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(u, v)
    assert any(not np.array_equal(u, v) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(c)))


# --- BatchNorm: batch statistics in training, running statistics in evaluation ------------------

@pytest.mark.slow
def test_batchnorm_evaluates_with_running_statistics_after_fit():
    net = _net(L.Dense(8), L.BatchNorm(), M.relu, L.Dense(2), input_shape=(2,))
    ds = fn.data.gaussian_clusters(jax.random.key(0), n_per_class=64)
    params = fn.model.init(jax.random.key(1), net)
    params, hist = fn.train.fit(jax.random.key(2), net, params, ds, ds, epochs=5,
                                batch_size=16, optimizer=fn.optim.adam(1e-2), verbose=False)
    bn = params[1]
    assert not np.allclose(bn["mean"], 0) and not np.allclose(bn["var"], 1)   # they moved
    whole = fn.model.forward(net, params, ds.x)
    alone = fn.model.forward(net, params, ds.x[5:6])         # one example alone: batch stats
    np.testing.assert_allclose(alone[0], whole[5], rtol=1e-5, atol=1e-6)   # would differ
    trained = fn.model.forward(net, params, ds.x[:16], train=True)
    assert not np.allclose(trained, whole[:16], atol=1e-3)  # training mode: batch statistics
    assert float(hist["test_accuracy"][-1]) > 0.9


@pytest.mark.slow
def test_running_statistics_follow_the_batch_and_no_optimizer_moves_them():
    net = _net(L.Dense(3), L.BatchNorm(momentum=0.25), L.Dense(2), input_shape=(2,))
    params = fn.model.init(jax.random.key(0), net)
    batch = _batch(jax.random.key(1), 8, 2, 2)
    g = fn.model.grads(net, params, batch)
    assert not np.asarray(g[1]["mean"]).any() and not np.asarray(g[1]["var"]).any()
    h = fn.layers.dense(params[0], batch.x)
    mu, var = h.mean(axis=0), h.var(axis=0) * 8 / 7                 # unbiased, as PyTorch
    opt = fn.optim.weight_decay(fn.optim.adam(0.1), 0.5)
    state = opt.init(params)
    _, g, _, caches = fn.model.backprop(net, params, batch, jnp.ones(8))
    updates, state = opt.update(g, state, params)
    new = fn.model.update_state(net, params, fn.optim.apply_updates(params, updates), caches)
    np.testing.assert_allclose(new[1]["mean"], 0.75 * params[1]["mean"] + 0.25 * mu, rtol=1e-5)
    np.testing.assert_allclose(new[1]["var"], 0.75 * params[1]["var"] + 0.25 * var, rtol=1e-5)
    stepped, _ = fn.model.grad_step(net, params, batch, 0.1)
    np.testing.assert_allclose(stepped[1]["mean"], new[1]["mean"], rtol=1e-6)


# --- composition ---------------------------------------------------------------------------------

def test_residual_gradients_of_the_two_branches_add(x64):
    inner = L.Dense(4)
    res = L.Residual(inner)
    p = inner.init(jax.random.key(0), (4,), jnp.float64)
    x = jax.random.normal(jax.random.key(1), (3, 4), jnp.float64)
    g = jax.random.normal(jax.random.key(2), (3, 4), jnp.float64)
    y, cache = res.apply(p, x)
    dp, dx = res.vjp(p, cache, g)
    _, inner_dx = inner.vjp(p, inner.apply(p, x)[1], g)
    np.testing.assert_allclose(dx, g + inner_dx, rtol=1e-15)
    with pytest.raises(ValueError, match=r"Residual\(Dense\(3\)\).*same shape"):
        _net(L.Residual(L.Dense(3)), input_shape=(4,))


@pytest.mark.slow
def test_the_issue_networks_build_and_print():
    dot = fn.model.network(L.serial(L.Dense(4, M.sigmoid), L.Dense(8, M.tanh),
                                    L.Dense(1, M.sigmoid)), input_shape=(2,), loss=fn.losses.mse)
    seq = fn.model.network(L.serial(L.Dense(128), M.relu, L.Dense(10), M.log_softmax),
                           input_shape=(784,), loss=fn.losses.nll)
    assert [p["w"].shape for p in fn.model.init(jax.random.key(0), dot)] == [(2, 4), (4, 8), (8, 1)]
    assert fn.model.init(jax.random.key(0), seq)[1] == ()             # an activation: no numbers
    assert repr(L.Conv2D(32, (3, 3), padding="SAME")) == "Conv2D(32, 3x3, stride 1, SAME)"
    assert repr(L.Conv2D(8, 3, stride=(2, 1), padding="VALID")) == "Conv2D(8, 3x3, stride 2x1, VALID)"
    assert repr(L.MaxPool2D((2, 2))) == "MaxPool2D(2x2)" and repr(L.Dropout(0.5)) == "Dropout(0.5)"
    summary = seq.summary()
    assert "1: relu" in summary and "101,770" in summary and "(10,)" in summary
    a = L.serial(L.Conv2D(8, 3), M.relu)
    b = L.serial(L.Conv2D(8, (3, 3), stride=1, padding="SAME"), M.relu)
    assert a == b and hash(a) == hash(b)                               # one jit entry
    head = lambda body, hw: fn.model.network(L.serial(body, L.Flatten(), L.Dense(2)),
                                             (hw, hw, 1), fn.losses.mse)
    assert head(a, 5) == head(b, 5) and head(a, 5) != head(a, 6)


def test_mlp_is_the_same_record_of_dense_layers():
    net = fn.model.mlp([2, 8, 2], hidden=M.sigmoid, output=M.sigmoid, loss=fn.losses.mse)
    same = fn.model.network(L.serial(L.Dense(8, M.sigmoid, fn.model.uniform(0.5)),
                                     L.Dense(2, M.sigmoid, fn.model.uniform(0.5))),
                            input_shape=(2,), loss=fn.losses.mse)
    a, b = fn.model.init(jax.random.key(3), net), fn.model.init(jax.random.key(3), same)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(u, v)
    x = jax.random.uniform(jax.random.key(4), (5, 2))
    np.testing.assert_array_equal(fn.model.forward(net, a, x), fn.model.forward(same, b, x))


# --- whole networks: gradcheck, learning, same key same run, resuming -----------------------------

def _small_cnn(dropout=0.25):
    return _net(L.Reshape((8, 8, 1)), L.Conv2D(4, 3), M.relu, L.MaxPool2D(2),
                L.Conv2D(6, 3, stride=(2, 1), padding="VALID"), L.BatchNorm(), M.relu,
                L.AvgPool2D((1, 2)), L.Flatten(), L.Dropout(dropout), L.Dense(8, M.relu),
                L.LayerNorm(), L.Dense(3), input_shape=(64,))


# The small CNN's longest chain of sums (6 rows), forward to the loss and back to conv 1's W:
# forward, conv 1 (3x3x1), conv 2 (3x3x4), BatchNorm's mean and variance (2 x 6x1x2), AvgPool
# (2), Dense (6), LayerNorm's mean and variance (2 x 8), Dense (8), the loss (3 classes, 6
# rows); back, the loss (3), Dense (3), LayerNorm (2 x 8), Dense (8), BatchNorm (2 x 12), conv
# 2's dx (6 filters, then 9 windows) and conv 1's dW, the longest sum of all (6 x 8x8
# positions); 12 more for exp, log, rsqrt and the elementwise steps. conftest.py: the bound.
SMALL_CNN_TERMS = (9 + 36 + 2 * 12 + 2 + 6 + 2 * 8 + 8 + 3 + 6
                   + 3 + 3 + 2 * 8 + 8 + 2 * 12 + 6 + 9 + 6 * 8 * 8 + 12)


def _cnn_float32_and_truth(to64):
    """The small CNN's hand gradient in float32, and jax.grad of its loss in float64 on the
    same float32 numbers, with the same dropout mask (both drawn with x64 on)."""
    net = _small_cnn()
    params = fn.model.init(jax.random.key(0), net, jnp.float32)
    batch = _batch(jax.random.key(1), 6, 64, 3, jnp.float32)
    hand = fn.model.grads(net, params, batch, key=jax.random.key(4))
    truth = jax.grad(lambda p: fn.model.loss(net, p, to64(batch), train=True,
                                             key=jax.random.key(4)))(to64(params))
    return hand, truth


@pytest.mark.slow
def test_the_whole_cnn_gradients_match_autodiff(x64, float32_errors, float32_bound, to64):
    net = _small_cnn()
    params = fn.model.init(jax.random.key(0), net, jnp.float64)
    batch = _batch(jax.random.key(1), 6, 64, 3, jnp.float64)
    for train in (True, False):
        report = fn.gradcheck.gradcheck(net, params, batch, key=jax.random.key(2), train=train)
        assert report.worst < 1e-9, report
    w = jnp.array([1.0, 0.0, 1.0, 1.0, 0.0, 1.0])
    assert fn.gradcheck.gradcheck(net, params, batch, w, key=jax.random.key(3)).worst < 1e-9
    assert fn.gradcheck.gradcheck(net, params, batch).passed      # a fixed key by default
    errors = float32_errors(*_cnn_float32_and_truth(to64))        # float32: the rounding bound
    assert max(errors.values()) < float32_bound(SMALL_CNN_TERMS), errors


@pytest.mark.slow
def test_the_float32_bound_rejects_a_gradient_off_by_1e_3(x64, float32_errors, float32_bound,
                                                          to64):
    """The float32 check can fail: the CNN's gradient with every leaf 1e-3 too large is off by
    1e-3 of the largest gradient, 7x the bound; one leaf 1% off fails too, for each leaf whose
    largest gradient is a tenth of the tree's or more."""
    hand, truth = _cnn_float32_and_truth(to64)
    bound = float32_bound(SMALL_CNN_TERMS)
    assert max(float32_errors(hand, truth).values()) < bound
    off = jax.tree.map(lambda v: v * np.float32(1 + 1e-3), hand)
    assert max(float32_errors(off, truth).values()) > 5 * bound
    top = max(float(jnp.abs(t).max()) for t in jax.tree.leaves(truth))
    leaves, tree = jax.tree.flatten(hand)
    big = [i for i, t in enumerate(jax.tree.leaves(truth)) if jnp.abs(t).max() >= 0.1 * top]
    assert len(big) >= 8, big                                     # all but the zero gradients
    for i in big:
        one = jax.tree.unflatten(tree, [v * np.float32(1.01) if j == i else v
                                        for j, v in enumerate(leaves)])
        assert max(float32_errors(one, truth).values()) > bound, i


@pytest.mark.slow
def test_same_key_gives_bitwise_the_same_run_dropout_included():
    net = _small_cnn(0.5)
    ds = _batch(jax.random.key(1), 40, 64, 3)
    params = fn.model.init(jax.random.key(0), net)
    runs = [fn.train.fit(jax.random.key(k), net, params, ds, epochs=2, batch_size=8,
                         optimizer=fn.optim.adam(1e-2), verbose=False) for k in (5, 5, 6)]
    (p1, h1), (p2, h2), (p3, _) = runs
    for u, v in zip(jax.tree.leaves(p1), jax.tree.leaves(p2)):
        np.testing.assert_array_equal(u, v)
    np.testing.assert_array_equal(h1["train_loss"], h2["train_loss"])
    assert any(not np.array_equal(u, v) for u, v in zip(jax.tree.leaves(p1), jax.tree.leaves(p3)))


@pytest.mark.slow
def test_an_adam_run_split_in_two_calls_is_bitwise_one_call():
    net = _small_cnn(0.5)
    ds = _batch(jax.random.key(1), 40, 64, 3)
    params = fn.model.init(jax.random.key(0), net)
    opt = fn.optim.adam(1e-2)
    kw = dict(batch_size=8, optimizer=opt, verbose=False)
    one, h_one = fn.train.fit(jax.random.key(9), net, params, ds, epochs=4, **kw)
    half, h_a, state = fn.train.fit(jax.random.key(9), net, params, ds, epochs=2,
                                    return_state=True, **kw)
    two, h_b = fn.train.fit(jax.random.key(9), net, half, ds, epochs=2, state=state,
                            start_epoch=2, **kw)
    for u, v in zip(jax.tree.leaves(one), jax.tree.leaves(two)):
        np.testing.assert_array_equal(u, v)
    np.testing.assert_array_equal(h_one["train_loss"],
                                  np.concatenate([h_a["train_loss"], h_b["train_loss"]]))
    with pytest.raises(ValueError, match="state does not fit"):
        fn.train.fit(jax.random.key(9), net, half, ds, epochs=1, state=(), **kw)


@pytest.mark.slow
def test_a_small_cnn_learns_fashion_mnist():
    try:
        train, test = fn.data.fashion_mnist()
    except Exception as e:                                        # noqa: BLE001
        pytest.skip(f"Fashion-MNIST is not installed here ({e})")
    net = _net(L.Reshape((28, 28, 1)), L.Conv2D(8, 3), M.relu, L.MaxPool2D(2),
               L.Conv2D(16, 3), L.BatchNorm(), M.relu, L.MaxPool2D(2), L.Flatten(),
               L.Dropout(0.25), L.Dense(10), input_shape=(784,))
    sub = fn.data.Dataset(train.x[:3000], train.y[:3000])
    held = fn.data.Dataset(test.x[:1000], test.y[:1000])
    params = fn.model.init(jax.random.key(0), net)
    params, hist = fn.train.fit(jax.random.key(1), net, params, sub, held, epochs=3,
                                batch_size=64, optimizer=fn.optim.adam(2e-3), verbose=False)
    # 3,000 images, 3 epochs: chance is 0.10; this network reaches about 0.75-0.8
    assert float(hist["test_accuracy"][-1]) > 0.7, hist["test_accuracy"]


@pytest.mark.slow
def test_big_evaluations_run_in_pieces_with_the_same_result(monkeypatch):
    net = _net(L.Reshape((6, 6, 1)), L.Conv2D(4, 3), M.relu, L.Flatten(), L.Dense(3),
               input_shape=(36,))
    params = fn.model.init(jax.random.key(0), net)
    x = jax.random.uniform(jax.random.key(1), (50, 36))
    whole = fn.model.forward(net, params, x)
    monkeypatch.setattr(fn.pieces, "EVAL_FLOATS", 36 * 13 * 40)   # 50 rows: too many
    monkeypatch.setattr(fn.pieces, "PIECE_FLOATS", 36 * 13 * 12)  # <= 12 rows: 5 pieces of 10
    fn.model._forward.clear_cache()
    pieces = fn.model.forward(net, params, x)
    fn.model._forward.clear_cache()
    np.testing.assert_allclose(pieces, whole, rtol=1e-6, atol=1e-7)


# --- bad input: named before anything compiles ----------------------------------------------------

@pytest.mark.parametrize("build, match", [
    (lambda: _net(L.Conv2D(8, 3), input_shape=(784,)),
     r"layer 0 of 1 \(Conv2D\(8, 3x3, stride 1, SAME\)\).*image input.*Reshape"),
    (lambda: _net(L.Reshape((28, 28, 1)), L.Conv2D(4, 3), L.Dense(10), input_shape=(784,)),
     r"layer 2 of 3 \(Dense\(10\)\), on input \(28, 28, 4\).*Flatten\(\)"),
    (lambda: _net(L.Reshape((3, 3, 1)), L.MaxPool2D(4), L.Flatten(), input_shape=(9,)),
     r"layer 1 of 3 \(MaxPool2D\(4x4\)\).*does not fit in the 3x3 input"),
    (lambda: _net(L.Reshape((3, 3, 1)), L.Conv2D(2, 5, padding="VALID"), L.Flatten(),
                  input_shape=(9,)), r"layer 1 of 3 \(Conv2D.*VALID\).*5x5 window"),
    (lambda: L.Dropout(1.0), r"Dropout\(rate\) must be in \[0, 1\)"),
    (lambda: L.Dropout(-0.1), r"Dropout\(rate\) must be in \[0, 1\)"),
    (lambda: L.Conv2D(0, 3), r"Conv2D\(filters\).*>= 1"),
    (lambda: L.Reshape((5, 5)).shape((24,)), r"Reshape\(\(5, 5\)\).*24 numbers"),
    (lambda: _net(L.Reshape((4, 4, 1)), L.Conv2D(2, 3), input_shape=(16,)),
     r"output is \(4, 4, 2\).*Flatten\(\) and a Dense"),
    (lambda: L.Conv2D(4, 3, padding="FULL"), r"padding must be 'SAME', 'VALID'"),
    (lambda: L.serial(L.Dense(3), "relu"), r"serial's argument 1.*funcnn.math.relu"),
    (lambda: L.Reshape(2.5), r"Reshape's shape must be positive ints"),
    (lambda: L.Reshape((4, 0)), r"Reshape's shape must be positive ints"),
    (lambda: L.Conv2D(4, 3, padding=((1.5, 1), (1, 1))), r"padding must be 'SAME'"),
    (lambda: L.BatchNorm(momentum=0.0), r"momentum must be in \(0, 1\]"),
    (lambda: fn.model.network(L.Dense(2), input_shape=(), loss=fn.losses.mse), "input_shape"),
])
def test_bad_layers_are_named_before_anything_compiles(build, match, compiles):
    with pytest.raises(ValueError if "argument" not in match else TypeError, match=match):
        build()
    assert compiles() == 0


def test_modes_and_inputs_are_checked_too():
    net = _net(L.Dense(3), L.BatchNorm(np.float32(0.5)), L.Dense(2), input_shape=(2,))
    assert net.layer.layers[1] == L.BatchNorm(0.5) and hash(net.layer.layers[1]) == hash(
        L.BatchNorm(0.5))                                   # plain floats kept: one jit entry
    params = fn.model.init(jax.random.key(0), net)
    with pytest.raises(TypeError, match="train must be True or False"):
        fn.model.forward(net, params, jnp.zeros((2, 2)), train=2)
    with pytest.raises(ValueError, match="empty"):
        fn.model.forward(net, params, jnp.zeros((0, 2)))
    with pytest.raises(TypeError, match="key"):
        fn.gradcheck.check_layer(L.Dense(2), (3,), key=3)
    assert L.Reshape((np.int64(2), 2)) == L.Reshape((2, 2))


def test_filters_must_be_a_positive_int():
    with pytest.raises(TypeError, match=r"Conv2D\(filters\).*int"):
        L.Conv2D(8.5, 3)


@pytest.mark.slow
def test_params_from_another_network_name_the_layer(compiles):
    a = _net(L.Reshape((6, 6, 1)), L.Conv2D(4, 3), L.Flatten(), L.Dense(3), input_shape=(36,))
    b = _net(L.Reshape((6, 6, 1)), L.Conv2D(5, 3), L.Flatten(), L.Dense(3), input_shape=(36,))
    params = jax.eval_shape(lambda: fn.model.init(jax.random.key(0), b))
    params = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), params)
    with pytest.raises(ValueError, match=r"params\[1\]\['w'\] has shape \(3, 3, 1, 5\) but "
                                         r"layer 1 \(Conv2D\(4, 3x3, stride 1, SAME\)\)"):
        fn.model.forward(a, params, jnp.zeros((2, 36)))
    with pytest.raises(ValueError, match=r"params\[2\] must be \(\).*for layer 2 \(Flatten\)"):
        good = fn.model.init(jax.random.key(1), a)
        fn.model.forward(a, (*good[:2], {"w": 1}, good[3]), jnp.zeros((2, 36)))
    with pytest.raises(ValueError, match=r"x must be a 2-D array \[n, 36\], got shape \(2, 6, 6\)"):
        fn.model.forward(a, fn.model.init(jax.random.key(1), a), jnp.zeros((2, 6, 6)))
    c = _net(L.Conv2D(2, 3), L.Flatten(), L.Dense(3), input_shape=(6, 6, 1))
    with pytest.raises(ValueError, match=r"examples of shape \(6, 6, 2\) but the network expects "
                                         r"\(6, 6, 1\)"):
        fn.model.forward(c, fn.model.init(jax.random.key(1), c), jnp.zeros((2, 6, 6, 2)))


@pytest.mark.slow
def test_fit_many_and_fit_steps_train_layered_networks():
    net = _net(L.Dense(8), L.BatchNorm(), M.relu, L.Dropout(0.2), L.Dense(2), input_shape=(2,))
    # 128 rows: each network >= 0.93 (32 rows gave 0.80). The first Dense's bias has a true
    # gradient of 0 (BatchNorm subtracts it again), and Adam scales its rounding noise up to
    # steps of lr: over many epochs it walks with each program's rounding, and the running
    # mean with it; over these few steps the ensemble and the single run stay equal.
    ds = fn.data.gaussian_clusters(jax.random.key(0), 128)
    many = jax.vmap(lambda k: fn.model.init(k, net))(jax.random.split(jax.random.key(1), 3))
    params, hist = fn.train.fit_many(jax.random.split(jax.random.key(2), 3), net, many, ds, ds,
                                     epochs=4, optimizer=fn.optim.adam(1e-2), verbose=False)
    assert hist["test_accuracy"].shape == (3, 4) and float(hist["test_accuracy"][:, -1].min()) > 0.8
    assert not np.allclose(params[1]["mean"], 0)                  # running statistics moved
    # network 1 alone: the same shuffles and dropout masks as in the ensemble
    one, h1 = fn.train.fit(jax.random.split(jax.random.key(2), 3)[1], net,
                           jax.tree.map(lambda v: v[1], many), ds, ds, epochs=4,
                           optimizer=fn.optim.adam(1e-2), verbose=False)
    for name in h1:
        np.testing.assert_allclose(hist[name][1], h1[name], rtol=1e-5, atol=1e-6)
    _, _, losses = fn.train.fit_steps(jax.random.key(3), net, fn.model.init(jax.random.key(4), net),
                                      ds, steps=40, batch_size=16, optimizer=fn.optim.adam(1e-2))
    assert float(losses[-5:].mean()) < float(losses[:5].mean())
