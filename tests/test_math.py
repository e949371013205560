"""Each activation's hand-written VJP against jax.vjp (float64; float32 against the float64
truth, within the rounding bound of conftest.py) and finite differences."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_vjp

import funcnn as fn

ACTS = [fn.math.identity, fn.math.sigmoid, fn.math.tanh, fn.math.relu, fn.math.softmax,
        fn.math.log_softmax, fn.math.gelu]


def _z_and_g(keys, dtype, scale=3.0):
    k_z, k_g = keys(2)
    z = scale * jax.random.normal(k_z, (7, 5), dtype)
    g = jax.random.normal(k_g, (7, 5), dtype)
    return z, g


def _hand_vjp(act):
    """act as (f, f_vjp) in the form jax.test_util.check_vjp expects."""
    def f_vjp(z):
        a = act.fn(z)
        return a, lambda g: (act.vjp(z, a, g),)
    return f_vjp


@pytest.mark.parametrize("act", ACTS, ids=lambda a: a.name)
@pytest.mark.slow
def test_vjp_matches_autodiff_float64(act, x64, keys):
    z, g = _z_and_g(keys, jnp.float64)
    _, pullback = jax.vjp(act.fn, z)
    np.testing.assert_allclose(act.vjp(z, act.fn(z), g), pullback(g)[0], rtol=1e-9, atol=1e-12)


# The longest chain of an activation's value and VJP: two sums over a row of 5 (softmax's and
# its VJP's), two of exp, log or tanh (4 each: accurate to a few ulp), 4 more elementwise steps
ACT_TERMS = 2 * 5 + 2 * 4 + 4


@pytest.mark.parametrize("act", ACTS, ids=lambda a: a.name)
@pytest.mark.slow
def test_vjp_matches_autodiff_float32(act, keys, x64, float32_errors, float32_bound, to64):
    """The float32 VJP against jax.vjp in float64 on the same numbers."""
    z, g = _z_and_g(keys, jnp.float32)
    _, pullback = jax.vjp(act.fn, to64(z))
    errors = float32_errors(act.vjp(z, act.fn(z), g), pullback(to64(g))[0])
    assert max(errors.values()) < float32_bound(ACT_TERMS), errors


@pytest.mark.parametrize("act", ACTS, ids=lambda a: a.name)
def test_vjp_matches_finite_differences(act, x64, keys):
    z, _ = _z_and_g(keys, jnp.float64, scale=1.0)
    if act is fn.math.relu:
        z = jnp.where(jnp.abs(z) < 1e-3, 0.5, z)   # keep finite differences off the kink
    check_vjp(act.fn, _hand_vjp(act), (z,), rtol=1e-6, atol=1e-6)


def test_check_vjp_bites_on_a_wrong_derivative(x64, keys):
    wrong = fn.math.Activation("bad_sigmoid", fn.math.sigmoid.fn,
                               lambda z, a, g: g * a * (1.0 + a))   # the sign flipped
    z, _ = _z_and_g(keys, jnp.float64, scale=1.0)
    with pytest.raises(AssertionError):
        check_vjp(wrong.fn, _hand_vjp(wrong), (z,), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("act", ACTS, ids=lambda a: a.name)
@pytest.mark.slow
def test_finite_at_plus_minus_1000_float32(act):
    z = jnp.array([[-1000.0, 0.0, 1000.0], [1000.0, 999.0, -1000.0]], jnp.float32)
    a = act.fn(z)
    g = act.vjp(z, a, jnp.ones_like(z))
    assert bool(jnp.isfinite(a).all()) and bool(jnp.isfinite(g).all()), (act.name, a, g)


@pytest.mark.slow
def test_values_at_known_points():
    z = jnp.array([[0.0, 2.0]])
    np.testing.assert_allclose(fn.math.sigmoid.fn(z), [[0.5, 1 / (1 + np.exp(-2.0))]], rtol=1e-6)
    np.testing.assert_allclose(fn.math.relu.fn(jnp.array([[-1.0, 3.0]])), [[0.0, 3.0]])
    p = fn.math.softmax.fn(jnp.array([[1.0, 2.0, 3.0]]))
    np.testing.assert_allclose(p[0], np.exp([1, 2, 3]) / np.exp([1, 2, 3]).sum(), rtol=1e-6)
    np.testing.assert_allclose(fn.math.log_softmax.fn(jnp.array([[1.0, 2.0, 3.0]])), np.log(p),
                               rtol=1e-6)
    # log_softmax is computed with log-sum-exp: exact where log(softmax) would give -inf
    assert float(fn.math.log_softmax.fn(jnp.array([[0.0, 200.0]]))[0, 0]) == -200.0


def test_activation_prints_its_name():
    assert repr(fn.math.sigmoid) == "sigmoid"
    assert set(fn.math.ACTIVATIONS) == {a.name for a in ACTS}
