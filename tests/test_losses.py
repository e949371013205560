"""Each loss's hand-written gradient against jax.grad (float64; float32 against the float64
truth, within the rounding bound of conftest.py) and finite differences, and the weighted-mean
contract: a row of weight 0 changes nothing."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_vjp

import funcnn as fn

LOSSES = [fn.losses.mse, fn.losses.softmax_cross_entropy, fn.losses.nll,
          fn.losses.binary_cross_entropy]


def _inputs(loss, keys, dtype, n=6, k=4):
    """An output `a` in the loss's domain, one-hot `y`, positive weights `w`."""
    k_a, k_y, k_w = keys(3)
    z = jax.random.normal(k_a, (n, k), dtype)
    a = {"nll": fn.math.log_softmax.fn(z), "binary_cross_entropy": fn.math.sigmoid.fn(z)}.get(
        loss.name, z)
    y = fn.data.one_hot(jax.random.randint(k_y, (n,), 0, k), k, dtype)
    w = jax.random.uniform(k_w, (n,), dtype, 0.5, 1.5)
    return a, y, w


@pytest.mark.parametrize("loss", LOSSES, ids=lambda l: l.name)
@pytest.mark.slow
def test_gradient_matches_autodiff_float64(loss, x64, keys):
    a, y, w = _inputs(loss, keys, jnp.float64)
    np.testing.assert_allclose(loss.vjp(a, y, w), jax.grad(loss.fn)(a, y, w), rtol=1e-9,
                               atol=1e-14)


# The longest chain of a loss's gradient (n = 6 rows, k = 4 classes): two sums over a row
# (softmax's max and sum), the weights' sum over the rows, two of exp and log (4 each: accurate
# to a few ulp), 4 more elementwise steps
LOSS_TERMS = 2 * 4 + 6 + 2 * 4 + 4


@pytest.mark.parametrize("loss", LOSSES, ids=lambda l: l.name)
@pytest.mark.slow
def test_gradient_matches_autodiff_float32(loss, keys, x64, float32_errors, float32_bound, to64):
    """The float32 gradient against jax.grad in float64 on the same numbers."""
    a, y, w = _inputs(loss, keys, jnp.float32)
    errors = float32_errors(loss.vjp(a, y, w), jax.grad(loss.fn)(*to64((a, y, w))))
    assert max(errors.values()) < float32_bound(LOSS_TERMS), errors


@pytest.mark.parametrize("loss", LOSSES, ids=lambda l: l.name)
def test_gradient_matches_finite_differences(loss, x64, keys):
    a, y, w = _inputs(loss, keys, jnp.float64)
    f = lambda a: loss.fn(a, y, w)
    f_vjp = lambda a: (f(a), lambda g: (g * loss.vjp(a, y, w),))
    check_vjp(f, f_vjp, (a,), rtol=1e-5, atol=1e-6)   # central differences: O(eps^2) error


@pytest.mark.parametrize("loss", LOSSES, ids=lambda l: l.name)
@pytest.mark.slow
def test_zero_weight_rows_change_nothing(loss, keys):
    a, y, _ = _inputs(loss, keys, jnp.float32)
    ones = jnp.ones(a.shape[0])
    padded = lambda v, fill: jnp.concatenate([v, jnp.full((2, *v.shape[1:]), fill, v.dtype)])
    a_pad, y_pad = padded(a, 0.3), padded(y, 1.0)   # garbage rows...
    w_pad = jnp.concatenate([ones, jnp.zeros(2)])   # ...at weight 0
    np.testing.assert_allclose(loss.fn(a_pad, y_pad, w_pad), loss.fn(a, y, ones), rtol=1e-6)
    np.testing.assert_allclose(loss.vjp(a_pad, y_pad, w_pad)[:-2], loss.vjp(a, y, ones),
                               rtol=1e-6)
    assert float(jnp.abs(loss.vjp(a_pad, y_pad, w_pad)[-2:]).max()) == 0.0


def test_known_values():
    a = jnp.array([[0.0, 1.0], [1.0, 1.0]])
    y = jnp.array([[0.0, 1.0], [1.0, 0.0]])
    w = jnp.ones(2)
    assert float(fn.losses.mse.fn(a, y, w)) == pytest.approx(0.25)   # (0 + 0 + 0 + 1) / 4
    z = jnp.array([[0.0, 0.0]])
    assert float(fn.losses.softmax_cross_entropy.fn(z, jnp.array([[1.0, 0.0]]), jnp.ones(1))) \
        == pytest.approx(np.log(2.0))
    # the loss is a mean over examples: the same rows twice give the same loss
    a2, y2 = jnp.concatenate([a, a]), jnp.concatenate([y, y])
    assert float(fn.losses.mse.fn(a2, y2, jnp.ones(4))) == pytest.approx(0.25)


def test_cross_entropy_from_logits_is_stable():
    z = jnp.array([[1000.0, -1000.0]], jnp.float32)
    y = jnp.array([[0.0, 1.0]])
    value = fn.losses.softmax_cross_entropy.fn(z, y, jnp.ones(1))
    assert float(value) == pytest.approx(2000.0)
    assert bool(jnp.isfinite(fn.losses.softmax_cross_entropy.vjp(z, y, jnp.ones(1))).all())
