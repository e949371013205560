"""Image layers in CHWN inside `serial(..., image_layout="CHWN")`: the same numbers as NHWC in
float64 (1e-12) and in a float32 `fit` (1e-5), every VJP against jax.grad through the CHWN
path (1e-9), runs chosen only where there are images, and a saved network keeps its order."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnn as fn

L, M = fn.layers, fn.math

RUNS = [
    (L.Conv2D(4, 3), M.relu, L.MaxPool2D(2)),
    (L.Conv2D(3, (2, 3), stride=(2, 1), padding="VALID", formulation="conv"), M.tanh),
    (L.Conv2D(3, 3, formulation="patches"), L.BatchNorm(), L.LayerNorm(), M.sigmoid),
    (L.AvgPool2D(3, stride=2, padding="SAME"), L.MaxPool2D(2, stride=1, padding="SAME")),
    (L.MaxPool2D((2, 3)), L.AvgPool2D(2), L.Dropout(0.3)),
    (L.Residual(L.serial(L.Conv2D(3, 3), L.BatchNorm(), M.relu)), L.MaxPool2D(2)),
]


@pytest.mark.parametrize("layers", RUNS, ids=repr)
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_chwn_gives_the_nhwc_numbers(layers, train, x64):
    a, b = (L.serial(*layers, L.Flatten(), L.Dense(3), image_layout=lay)
            for lay in ("NHWC", "CHWN"))
    assert [c for _, _, c in b._groups()][0] and not any(c for _, _, c in a._groups())
    shape = (9, 8, 3)
    p = a.init(jax.random.key(0), shape, jnp.float64)
    x = jax.random.normal(jax.random.key(1), (4, *shape), jnp.float64)
    (ya, ca), (yb, cb) = (net.apply(p, x, train, jax.random.key(2)) for net in (a, b))
    np.testing.assert_allclose(yb, ya, rtol=1e-12, atol=1e-13)
    g = jax.random.normal(jax.random.key(3), ya.shape, jnp.float64)
    for u, v in zip(jax.tree.leaves(b.vjp(p, cb, g)), jax.tree.leaves(a.vjp(p, ca, g))):
        np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("layers", RUNS, ids=repr)
def test_chwn_vjps_match_autodiff_float64(layers):
    report = fn.gradcheck.check_layer(L.serial(*layers, image_layout="CHWN"), (9, 8, 3), n=4,
                                      train=True)
    assert report.worst < 1e-9, report


def test_only_runs_with_images_move_and_nhwc_is_the_default():
    conv = L.serial(L.Conv2D(4, 3), M.relu, L.Flatten(), L.Dense(2))
    assert conv.image_layout == "NHWC" and not any(c for _, _, c in conv._groups())
    chwn = L.serial(L.Conv2D(4, 3), M.relu, L.Flatten(), L.Dense(2), image_layout="CHWN")
    assert chwn._groups() == [(0, 2, True), (2, 3, False), (3, 4, False)]
    flat = L.serial(L.Dense(4), L.BatchNorm(), M.relu, image_layout="CHWN")
    assert not any(c for _, _, c in flat._groups())      # no image layer: nothing to move
    with pytest.raises(fn.checks.InputError, match="image_layout"):
        L.serial(L.Dense(2), image_layout="NCHW")


def _cnn(layout):
    return fn.model.network(
        L.serial(L.Reshape((8, 8, 1)), L.Conv2D(4, 3), M.relu, L.MaxPool2D(2),
                 L.Conv2D(6, 3), L.BatchNorm(), M.relu, L.MaxPool2D(2), L.Flatten(),
                 L.Dense(3), image_layout=layout),
        input_shape=(64,), loss=fn.losses.softmax_cross_entropy)


def test_fit_in_chwn_trains_as_nhwc_does_float32():
    key = jax.random.key(0)
    x = jax.random.uniform(key, (96, 64))
    y = fn.data.one_hot(jax.random.randint(jax.random.key(1), (96,), 0, 3), 3)
    data = fn.data.Dataset(x, y)
    runs = []
    for layout in ("NHWC", "CHWN"):
        net = _cnn(layout)
        params = fn.model.init(jax.random.key(2), net)
        runs.append(fn.train.fit(jax.random.key(3), net, params, data, None, epochs=3, lr=0.1,
                                 batch_size=32, verbose=False))
    (pa, ha), (pb, hb) = runs
    assert ha["train_loss"][-1] < ha["train_loss"][0]
    np.testing.assert_allclose(hb["train_loss"], ha["train_loss"], rtol=1e-5)
    for u, v in zip(jax.tree.leaves(pb), jax.tree.leaves(pa)):
        np.testing.assert_allclose(u, v, rtol=1e-4, atol=1e-6)


def test_a_saved_chwn_network_comes_back_chwn(tmp_path):
    net = _cnn("CHWN")
    params = fn.model.init(jax.random.key(0), net)
    back = fn.io.load_network(fn.io.save(tmp_path / "cnn.npz", params, net))
    assert back == net and back.layer.image_layout == "CHWN"
    plain = fn.io.load_network(fn.io.save(tmp_path / "nhwc.npz", params, _cnn("NHWC")))
    assert plain.layer.image_layout == "NHWC" and plain != net
