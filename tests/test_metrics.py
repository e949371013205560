"""Metrics on small cases worked out by hand."""
import jax.numpy as jnp
import numpy as np
import pytest

import funcnn as fn

A = jnp.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])   # predicted 0, 1, 0, 1
Y = jnp.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])   # true      0, 1, 1, 1


def test_accuracy_and_weights():
    assert float(fn.metrics.accuracy(A, Y)) == pytest.approx(0.75)
    w = jnp.array([1.0, 1.0, 0.0, 1.0])                            # drop the wrong row
    assert float(fn.metrics.accuracy(A, Y, w)) == pytest.approx(1.0)


def test_one_column_thresholds_at_one_half():
    a, y = jnp.array([[0.2], [0.7], [0.6]]), jnp.array([[0.0], [1.0], [0.0]])
    np.testing.assert_array_equal(fn.metrics.predict_class(a), [0, 1, 1])
    assert float(fn.metrics.accuracy(a, y)) == pytest.approx(2 / 3)


def test_mse_and_cross_entropy():
    expected_mse = np.mean(np.mean((np.asarray(A) - np.asarray(Y)) ** 2, axis=1))
    assert float(fn.metrics.mse(A, Y)) == pytest.approx(expected_mse, rel=1e-6)
    expected_ce = -np.mean(np.log(np.array([0.9, 0.8, 0.4, 0.7]) + 1e-8))
    assert float(fn.metrics.cross_entropy(A, Y)) == pytest.approx(expected_ce, rel=1e-6)


@pytest.mark.slow
def test_confusion_matrix_rows_true_columns_predicted():
    np.testing.assert_array_equal(fn.metrics.confusion_matrix(A, Y), [[1, 0], [1, 2]])
    assert int(fn.metrics.confusion_matrix(A, Y, k=3).sum()) == 4
