"""CausalSelfAttention by blocks (attention_blocks.py, FlashAttention's formulation) in float64:
the same y as the plain formulation with the same params, its hand-written VJP against jax.vjp
(check_layer, below 1e-9) and the checker biting on a wrong one, a cache without the t x t
probabilities, the one rule that picks it ("auto"), and bad arguments refused by name."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnn as fn
from funcnn.checks import InputError
from funcnn.layers import attention

L = fn.layers
Attention = L.CausalSelfAttention


def _params(key, d, scale=0.5):
    """Weights large enough that the softmax is far from uniform (init's 0.02 makes P ~ 1/t)."""
    k = jax.random.split(key, 4)
    draw = lambda k, shape: scale * jax.random.normal(k, shape, jnp.float64)
    return {"w_qkv": draw(k[0], (d, 3 * d)), "b_qkv": draw(k[1], (3 * d,)),
            "w_out": draw(k[2], (d, d)), "b_out": draw(k[3], (d,))}


@pytest.mark.parametrize("t, block", [(8, 4), (8, 8), (16, 4), (16, 8)])
@pytest.mark.parametrize("heads", [1, 2])
def test_blocks_give_the_plain_y(t, block, heads, x64):
    d = 8
    k_p, k_x = jax.random.split(jax.random.key(10 * t + block + heads))
    p = _params(k_p, d)
    x = jax.random.normal(k_x, (3, t, d), jnp.float64)
    want = Attention(heads, formulation="plain").apply(p, x)[0]
    got = Attention(heads, formulation="blocks", block=block).apply(p, x)[0]
    assert got.dtype == jnp.float64
    rel = float(jnp.abs(got - want).max() / jnp.abs(want).max())
    assert rel < 1e-12, rel


@pytest.mark.parametrize("t, block, heads", [(8, 4, 2), (16, 4, 1), (16, 8, 2)])
def test_blocks_vjp_matches_autodiff(t, block, heads, x64):
    p = _params(jax.random.key(t + block + heads), 8)
    report = fn.gradcheck.check_layer(Attention(heads, formulation="blocks", block=block),
                                      (t, 8), params=p, n=3)
    assert report.passed and report.worst < 1e-9, report
    assert set(report.errors) == {"['w_qkv']", "['b_qkv']", "['w_out']", "['b_out']", "dx"}


class _HalfP(Attention):
    """Wrong: the VJP recomputes P = exp(S - lse) from an lse off by log 2, so P is halved."""
    def vjp(self, p, cache, g):
        x, q, k, v, o, lse = cache
        return super().vjp(p, (x, q, k, v, o, lse + jnp.log(2.0)), g)


def test_the_check_bites_on_a_wrong_blocks_vjp(x64):
    p = _params(jax.random.key(5), 8)
    report = fn.gradcheck.check_layer(_HalfP(2, formulation="blocks", block=4), (8, 8),
                                      params=p, n=3)
    assert not report.passed and report.worst > 1e-3, report


def test_the_blocks_cache_holds_no_t_by_t_array(x64):
    t, d, heads = 16, 8, 2
    p = _params(jax.random.key(6), d)
    x = jax.random.normal(jax.random.key(7), (3, t, d), jnp.float64)
    blocks = Attention(heads, formulation="blocks", block=4).apply(p, x, True)[1]
    shapes = [a.shape for a in jax.tree.leaves(blocks)]
    assert not [s for s in shapes if s[-2:] == (t, t)], shapes
    assert (3, heads, t) in shapes                                   # lse: one number a row
    plain = Attention(heads, formulation="plain").apply(p, x, True)[1]   # the check can fail
    assert [a.shape for a in jax.tree.leaves(plain) if a.shape[-2:] == (t, t)]


@pytest.mark.parametrize("layer, t, expected", [
    (Attention(4), 64, "plain"),                        # below BLOCKS_MIN_CONTEXT: a wash
    (Attention(4), attention.BLOCKS_MIN_CONTEXT, "blocks"),
    (Attention(4), 256, "blocks"),
    (Attention(4), 160, "plain"),                       # not a multiple of the block
    (Attention(4, block=32), 160, "blocks"),
    (Attention(4, dropout=0.1), 256, "plain"),          # blocks drop nothing
    (Attention(4, formulation="plain"), 256, "plain"),
    (Attention(4, formulation="blocks", block=4), 8, "blocks"),
])
def test_auto_picks_blocks_by_one_rule(layer, t, expected):
    assert layer._as(t) == expected


def test_auto_at_a_long_context_computes_by_blocks_and_equals_plain(x64):
    """A GPT-sized context through "auto": the cache is the blocks' (no P), the y the plain's."""
    t, d = attention.BLOCKS_MIN_CONTEXT, 8
    p = _params(jax.random.key(8), d, scale=0.3)
    x = jax.random.normal(jax.random.key(9), (1, t, d), jnp.float64)
    y, cache = Attention(2).apply(p, x)
    assert not [a for a in jax.tree.leaves(cache) if a.shape[-2:] == (t, t)]
    want = Attention(2, formulation="plain").apply(p, x)[0]
    np.testing.assert_allclose(y, want, rtol=1e-11, atol=1e-12)


def test_a_gpt_by_blocks_trains_as_the_plain_one(x64):
    """Two networks differing only in the attention's formulation: the same params fit both,
    the same loss and gradients to rounding."""
    def gpt(formulation):
        block = L.Residual(L.serial(L.LayerNorm(), Attention(2, formulation=formulation,
                                                             block=4)))
        return fn.model.network(L.serial(L.Embedding(11, 16), L.PositionalEmbedding(8), block,
                                         L.LayerNorm(), L.Dense(11)),
                                input_shape=(8,), loss=fn.losses.softmax_cross_entropy)
    plain, blocks = gpt("plain"), gpt("blocks")
    params = fn.model.init(jax.random.key(10), plain, jnp.float64)
    x = jax.random.randint(jax.random.key(11), (2, 8), 0, 11)
    y = jax.random.randint(jax.random.key(12), (2, 8), 0, 11)
    (loss_p, g_p), (loss_b, g_b) = (fn.model.value_and_grads(net, params, fn.data.Dataset(x, y))[:2]
                                    for net in (plain, blocks))
    np.testing.assert_allclose(loss_b, loss_p, rtol=1e-12)
    for a, b in zip(jax.tree.leaves(g_b), jax.tree.leaves(g_p), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_bad_formulations_and_blocks_are_refused_by_name():
    with pytest.raises(InputError, match=r"t = 8 to be a multiple of block = 3"):
        Attention(2, formulation="blocks", block=3).shape((8, 8))
    with pytest.raises(InputError, match=r"CausalSelfAttention\(block\) must be >= 1"):
        Attention(2, block=0)
    with pytest.raises(InputError, match=r"formulation must be 'auto', 'plain' or 'blocks'"):
        Attention(2, formulation="flash")
    with pytest.raises(InputError, match=r"'blocks' does not drop attention weights"):
        Attention(2, dropout=0.1, formulation="blocks")
