"""benchmarks/flash_attention.py's FlashCausalSelfAttention in float64: the same y as funcnn's
CausalSelfAttention with the same params, its hand-written VJP against jax.vjp (check_layer,
below 1e-9), a cache without the t x t probabilities, and a bad block or dropout refused by
name."""
import os
import sys
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnn as fn
from funcnn.checks import InputError

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "benchmarks"))
from flash_attention import FlashCausalSelfAttention, gpt  # noqa: E402

L = fn.layers


def _params(key, d, scale=0.5):
    """Weights large enough that the softmax is far from uniform (init's 0.02 makes P ~ 1/t)."""
    k = jax.random.split(key, 4)
    draw = lambda k, shape: scale * jax.random.normal(k, shape, jnp.float64)
    return {"w_qkv": draw(k[0], (d, 3 * d)), "b_qkv": draw(k[1], (3 * d,)),
            "w_out": draw(k[2], (d, d)), "b_out": draw(k[3], (d,))}


@pytest.mark.parametrize("t, block", [(8, 4), (8, 8), (16, 4), (16, 8)])
@pytest.mark.parametrize("heads", [1, 2])
def test_y_matches_plain_attention(t, block, heads, x64):
    d = 8
    k_p, k_x = jax.random.split(jax.random.key(10 * t + block + heads))
    p = _params(k_p, d)
    x = jax.random.normal(k_x, (3, t, d), jnp.float64)
    want = L.CausalSelfAttention(heads).apply(p, x)[0]
    got = FlashCausalSelfAttention(heads, block=block).apply(p, x)[0]
    assert got.dtype == jnp.float64
    rel = float(jnp.abs(got - want).max() / jnp.abs(want).max())
    assert rel < 1e-12, rel


@pytest.mark.parametrize("t, block, heads", [(8, 4, 2), (16, 4, 1), (16, 8, 2)])
def test_vjp_matches_autodiff(t, block, heads, x64):
    p = _params(jax.random.key(t + block + heads), 8)
    report = fn.gradcheck.check_layer(FlashCausalSelfAttention(heads, block=block), (t, 8),
                                      params=p, n=3)
    assert report.passed and report.worst < 1e-9, report
    assert set(report.errors) == {"['w_qkv']", "['b_qkv']", "['w_out']", "['b_out']", "dx"}


class _HalfP(FlashCausalSelfAttention):
    """Wrong: the VJP recomputes P = exp(S - lse) from an lse off by log 2, so P is halved."""
    def vjp(self, p, cache, g):
        x, q, k, v, o, lse = cache
        return super().vjp(p, (x, q, k, v, o, lse + jnp.log(2.0)), g)


def test_the_check_bites_on_a_wrong_vjp(x64):
    p = _params(jax.random.key(5), 8)
    report = fn.gradcheck.check_layer(_HalfP(2, block=4), (8, 8), params=p, n=3)
    assert not report.passed and report.worst > 1e-3, report


def test_the_cache_holds_no_t_by_t_array(x64):
    t, d, heads = 16, 8, 2
    p = _params(jax.random.key(6), d)
    x = jax.random.normal(jax.random.key(7), (3, t, d), jnp.float64)
    flash = FlashCausalSelfAttention(heads, block=4).apply(p, x, True)[1]
    shapes = [a.shape for a in jax.tree.leaves(flash)]
    assert not [s for s in shapes if s[-2:] == (t, t)], shapes
    assert (3, heads, t) in shapes                                   # lse: one number a row
    plain = L.CausalSelfAttention(heads).apply(p, x, True)[1]        # the check can fail
    assert [a.shape for a in jax.tree.leaves(plain) if a.shape[-2:] == (t, t)]


def test_a_flash_gpt_has_the_plain_gpts_params_and_loss(x64):
    """gpt(..., attention) differs from shakespeare_char's network only in the attention."""
    plain = gpt(11, 8, 1, 2, 16, L.CausalSelfAttention)
    flash = gpt(11, 8, 1, 2, 16, partial(FlashCausalSelfAttention, block=4))
    params = fn.model.init(jax.random.key(8), plain, jnp.float64)
    assert jax.tree.structure(params) == jax.tree.structure(fn.model.init(jax.random.key(9),
                                                                          flash, jnp.float64))
    x = jax.random.randint(jax.random.key(10), (2, 8), 0, 11)
    want, got = (net.layer.apply(params, x, False, None)[0] for net in (plain, flash))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_a_block_that_does_not_divide_t_is_refused():
    layer = FlashCausalSelfAttention(2, block=3)
    with pytest.raises(InputError, match=r"block = 3 does not divide the context t = 8"):
        layer.shape((8, 8))
    with pytest.raises(InputError, match=r"block = 3"):
        layer.apply(_params_f32(8), jnp.zeros((1, 8, 8)))
    with pytest.raises(InputError, match=r"FlashCausalSelfAttention\(block\) must be >= 1"):
        FlashCausalSelfAttention(2, block=0)


def test_dropout_is_refused():
    with pytest.raises(ValueError, match=r"FlashCausalSelfAttention\(dropout\) must be 0"):
        FlashCausalSelfAttention(2, dropout=0.1)


def _params_f32(d):
    return L.CausalSelfAttention(2).init(jax.random.key(11), (8, d), jnp.float32)
