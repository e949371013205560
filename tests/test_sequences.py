"""Sequences: Dense, LayerNorm, Dropout and Residual on [n, t, d] (acting on the last axis, at
every position alike), a network whose output is a row of logits per position, trained on
class ids int[n, t]: each refereed by jax.grad in float64."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnn as fn

L, M = fn.layers, fn.math


@pytest.mark.parametrize("layer", [L.Dense(5), L.Dense(4, M.tanh), L.LayerNorm(),
                                   L.Dropout(0.3), L.Residual(L.serial(L.LayerNorm(), L.Dense(3))),
                                   M.relu], ids=repr)
@pytest.mark.parametrize("t", [1, 6])
def test_layers_act_on_each_position_of_a_sequence(layer, t, x64):
    report = fn.gradcheck.check_layer(layer, input_shape=(t, 3), key=jax.random.key(t))
    assert report.passed and report.worst < 1e-9, report


def test_dense_maps_every_position_alike():
    """Row i, position j of Dense on [n, t, d] is Dense of that one vector: no mixing."""
    layer = L.Dense(4)
    p = layer.init(jax.random.key(0), (3,), jnp.float32)
    x = jax.random.normal(jax.random.key(1), (2, 5, 3))
    y, _ = layer.apply(p, x)
    one, _ = layer.apply(p, x.reshape(10, 3))
    np.testing.assert_array_equal(y.reshape(10, 4), one)


def test_dense_still_refuses_an_image_and_a_network_its_images_as_outputs():
    with pytest.raises(fn.checks.InputError, match=r"needs a flat input .*put Flatten\(\)"):
        fn.model.network(L.serial(L.Dense(3)), input_shape=(4, 4, 2),
                         loss=fn.losses.softmax_cross_entropy)
    with pytest.raises(fn.checks.InputError, match=r"output is \(4, 4, 2\) per example"):
        fn.model.network(L.serial(L.LayerNorm()), input_shape=(4, 4, 2), loss=fn.losses.mse)


def _sequence_net():
    return fn.model.network(
        L.serial(L.Dense(16, M.tanh), L.Residual(L.serial(L.LayerNorm(), L.Dense(16))),
                 L.Dropout(0.1), L.LayerNorm(), L.Dense(5)),
        input_shape=(7, 3), loss=fn.losses.softmax_cross_entropy)


@pytest.mark.slow
def test_a_network_with_a_row_of_logits_per_position_matches_autodiff(x64):
    net = _sequence_net()
    assert net.output_shape == (7, 5)
    k_x, k_y, k_p = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(k_x, (6, 7, 3), jnp.float64)
    y = jax.random.randint(k_y, (6, 7), 0, 5)                  # a class per position
    params = fn.model.init(k_p, net, jnp.float64)
    w = jnp.array([1.0, 1.0, 0.0, 1.0, 2.0, 1.0])              # row weights, as for vectors
    report = fn.gradcheck.gradcheck(net, params, (x, y), w, key=jax.random.key(5))
    assert report.passed and report.worst < 1e-9, report
    # the loss is the mean over positions, then the weighted mean over rows
    log_p = jax.nn.log_softmax(fn.model.forward(net, params, x), axis=-1)
    per_row = -jnp.take_along_axis(log_p, y[..., None], axis=-1)[..., 0].mean(axis=1)
    np.testing.assert_allclose(fn.model.loss(net, params, (x, y), train=False),
                               per_row.mean(), rtol=1e-13)


@pytest.mark.slow
def test_fit_trains_a_sequence_network_on_class_ids_per_position():
    net = _sequence_net()
    k_x, k_p, k_fit = jax.random.split(jax.random.key(1), 3)
    x = jax.random.normal(k_x, (64, 7, 3))
    y = (x[..., 0] > 0).astype(jnp.int32) + 2 * (x[..., 1] > 0)  # a class from each position
    _, hist = fn.train.fit(k_fit, net, fn.model.init(k_p, net), (x, y), (x, y), epochs=15,
                           batch_size=16, optimizer=fn.optim.adam(1e-2), verbose=False)
    assert float(hist["test_accuracy"][-1]) > 0.8 > float(hist["test_accuracy"][0])
