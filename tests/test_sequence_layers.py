"""The first layers of a character-level GPT: Embedding, PositionalEmbedding, CausalSelfAttention
and gelu, each VJP against jax.vjp in float64 (check_layer, below 1e-9); the attention against a
reference written here in plain jnp (einsum, tril, jax.nn.softmax), and causal; the embedding's
segment sum with repeated tokens; arguments refused by name."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnn as fn
from funcnn.checks import InputError, InputTypeError

L, M = fn.layers, fn.math
check = fn.gradcheck.check_layer


def _attention_params(key, d, dtype=jnp.float64, scale=0.5):
    """Weights large enough that the softmax is far from uniform (init's 0.02 makes P ~ 1/t)."""
    k = jax.random.split(key, 4)
    draw = lambda k, shape: scale * jax.random.normal(k, shape, dtype)
    return {"w_qkv": draw(k[0], (d, 3 * d)), "b_qkv": draw(k[1], (3 * d,)),
            "w_out": draw(k[2], (d, d)), "b_out": draw(k[3], (d,))}


def _reference_attention(p, x, heads, causal=True):
    """GPT-2's attention written apart from funcnn's, as nanoGPT writes it (x W for x W^T)."""
    n, t, d = x.shape
    e = d // heads
    q, k, v = jnp.split(x @ p["w_qkv"] + p["b_qkv"][None, None], 3, axis=-1)
    q, k, v = (a.reshape(n, t, heads, e).transpose(0, 2, 1, 3) for a in (q, k, v))
    att = jnp.einsum("nhqe,nhke->nhqk", q, k) * (1.0 / np.sqrt(e))
    if causal:
        att = jnp.where(jnp.tril(jnp.ones((t, t))) == 0, -jnp.inf, att)
    att = jax.nn.softmax(att, axis=-1)
    y = jnp.einsum("nhqk,nhke->nhqe", att, v).transpose(0, 2, 1, 3).reshape(n, t, d)
    return y @ p["w_out"] + p["b_out"][None, None]


# --- each layer against jax.vjp (check_layer, float64) -------------------------------------------

@pytest.mark.parametrize("t", [1, 5])
@pytest.mark.parametrize("d", [8, 16])
def test_embedding_vjp_matches_autodiff(t, d):
    report = check(L.Embedding(11, d), (t,), n=4)
    assert report.passed and report.worst < 1e-9, report
    assert set(report.errors) == {"['w']"} and "dx not compared" in repr(report), report


class _SetsRows(L.Embedding):
    """Wrong: a repeated token's row is set by one position's g instead of their sum."""
    def vjp(self, p, cache, g):
        dw = jnp.zeros_like(p["w"]).at[cache.reshape(-1)].set(g.reshape(-1, self.d))
        return {"w": dw}, np.zeros(cache.shape, jax.dtypes.float0)


class _FloatDx(L.Embedding):
    """Wrong: a float dx for integer tokens (jax.vjp's is float0)."""
    def vjp(self, p, cache, g):
        return super().vjp(p, cache, g)[0], jnp.zeros(cache.shape)


def test_check_layer_bites_on_an_integer_input_layer():
    """Tokens repeat in check_layer's draw (20 of 11), so a set for an add fails; a dx that is
    not float0 fails as a problem at dx, named."""
    report = check(_SetsRows(11, 8), (5,), n=4)
    assert not report.passed and report.errors["['w']"] > 1e-3, report
    report = check(_FloatDx(11, 8), (5,), n=4)
    assert not report.passed and [path for path, _ in report.problems] == ["dx"], report
    assert "float0" in report.problems[0][1] and "not compared" not in repr(report)


@pytest.mark.parametrize("t", [1, 5])
@pytest.mark.parametrize("d", [8, 16])
def test_positional_embedding_vjp_matches_autodiff(t, d):
    report = check(L.PositionalEmbedding(7), (t, d), n=4)
    assert report.passed and report.worst < 1e-9, report
    assert set(report.errors) == {"['w']", "dx"}


@pytest.mark.parametrize("t", [1, 5])
@pytest.mark.parametrize("heads, d", [(1, 8), (2, 8), (4, 16)])
def test_attention_vjp_matches_autodiff(t, heads, d, x64):
    p = _attention_params(jax.random.key(t + d), d)
    report = check(L.CausalSelfAttention(heads), (t, d), params=p, n=3)
    assert report.passed and report.worst < 1e-9, report
    assert set(report.errors) == {"['w_qkv']", "['b_qkv']", "['w_out']", "['b_out']", "dx"}


@pytest.mark.parametrize("t", [1, 5])
@pytest.mark.parametrize("heads, d", [(2, 16), (4, 8), (1, 16)])
@pytest.mark.slow
def test_attention_vjp_matches_autodiff_more_shapes(t, heads, d, x64):
    p = _attention_params(jax.random.key(7 * t + d), d)
    for train in (True, False):
        report = check(L.CausalSelfAttention(heads), (t, d), params=p, n=3, train=train)
        assert report.passed and report.worst < 1e-9, report


@pytest.mark.parametrize("t", [1, 5])
def test_attention_with_dropout_vjp_matches_autodiff(t, x64):
    """In training both sides draw the same mask of attention weights from the same row keys."""
    p = _attention_params(jax.random.key(3), 8)
    report = check(L.CausalSelfAttention(2, dropout=0.3), (t, 8), params=p, n=4)
    assert report.passed and report.worst < 1e-9, report


def test_gelu_layer_vjp_matches_autodiff():
    report = check(M.gelu, (4, 6), n=3)
    assert report.passed and report.worst < 1e-9, report


@pytest.mark.slow
def test_a_small_gpt_block_matches_autodiff(x64):
    """PositionalEmbedding, then a GPT block (both residual branches, gelu), as one layer."""
    block = L.serial(L.PositionalEmbedding(6),
                     L.Residual(L.serial(L.LayerNorm(), L.CausalSelfAttention(2, dropout=0.1))),
                     L.Residual(L.serial(L.LayerNorm(), L.Dense(32, M.gelu), L.Dense(8))),
                     L.LayerNorm(), L.Dense(5))
    report = check(block, (5, 8), n=3)
    assert report.passed and report.worst < 1e-9, report


@pytest.mark.parametrize("scale", [0.02, 0.3])
@pytest.mark.parametrize("t, formulation", [(64, "plain"), (256, "plain"), (256, "blocks")])
def test_attention_in_float32_is_within_its_stated_rounding(scale, t, formulation, x64):
    """float32's tolerance, stated apart: y and every gradient of the hand VJP in float32 within
    1e-5 (about 84 float32 epsilons), norm-wise, of the same code in float64, at the recipe's
    width (128, 4 heads), contexts 64 and 256, at GPT-2's init (0.02) and at weights 15x larger
    (scores of several units, where exp magnifies the rounding of S); both formulations.
    Measured on a Zen 4: at most 6e-7 at 0.02, 3.2e-6 at 0.3, alike in both."""
    att, d = L.CausalSelfAttention(4, formulation=formulation), 128
    p = _attention_params(jax.random.key(t), d, jnp.float64, scale)
    x = jax.random.normal(jax.random.key(t + 1), (2, t, d), jnp.float64)
    g = jax.random.normal(jax.random.key(t + 2), (2, t, d), jnp.float64)

    def forward_and_back(p, x, g):
        y, cache = att.apply(p, x)
        return y, *att.vjp(p, cache, g)

    exact = forward_and_back(p, x, g)
    single = forward_and_back(*jax.tree.map(lambda a: a.astype(jnp.float32), (p, x, g)))
    for got, want in zip(jax.tree.leaves(single), jax.tree.leaves(exact), strict=True):
        assert got.dtype == jnp.float32
        err = jnp.linalg.norm(got.astype(jnp.float64) - want) / jnp.linalg.norm(want)
        assert err < 1e-5, (want.shape, float(err))


# --- gelu ----------------------------------------------------------------------------------------

def test_gelu_is_gpt2s_tanh_approximation(x64):
    z = jnp.linspace(-6.0, 6.0, 61, dtype=jnp.float64).reshape(1, -1)
    want = 0.5 * z * (1 + jnp.tanh(np.sqrt(2 / np.pi) * (z + 0.044715 * z ** 3)))
    np.testing.assert_allclose(M.gelu.fn(z), want, rtol=1e-15, atol=1e-15)
    np.testing.assert_allclose(M.gelu.fn(z), jax.nn.gelu(z, approximate=True), rtol=1e-14,
                               atol=1e-15)
    slope = jax.vmap(jax.grad(lambda s: jax.nn.gelu(s, approximate=True)))(z[0])
    # atol on the slope's scale (~1): near z = -6, 1 + t ~ 1e-10 is a difference of O(1) terms
    np.testing.assert_allclose(M.gelu.vjp(z, M.gelu.fn(z), jnp.ones_like(z))[0], slope,
                               rtol=1e-13, atol=1e-14)


def test_gelu_in_an_mlp_is_saved_by_name():
    net = fn.model.mlp([3, 4, 2], hidden=M.gelu, output=M.identity, loss=fn.losses.mse)
    assert fn.descriptions.rebuild(fn.descriptions.describe(net)) == net
    assert M.ACTIVATIONS["gelu"] is M.gelu


# --- attention: the reference, the mask ----------------------------------------------------------

@pytest.mark.parametrize("heads, d, t", [(1, 8, 5), (2, 8, 1), (4, 16, 5)])
def test_attention_equals_a_reference_in_plain_jnp(heads, d, t, x64):
    layer = L.CausalSelfAttention(heads)
    k_p, k_x, k_g = jax.random.split(jax.random.key(heads * d + t), 3)
    p = _attention_params(k_p, d)
    x = jax.random.normal(k_x, (3, t, d), jnp.float64)
    g = jax.random.normal(k_g, (3, t, d), jnp.float64)

    @jax.jit
    def both(p, x, g):                            # one program for each side (fast to test)
        y, cache = layer.apply(p, x)
        reference = lambda p, x: (_reference_attention(p, x, heads) * g).sum()
        return y, _reference_attention(p, x, heads), layer.vjp(p, cache, g), jax.grad(
            reference, argnums=(0, 1))(p, x)
    y, want, (dp, dx), (auto_p, auto_x) = both(p, x, g)
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)
    for name in p:
        np.testing.assert_allclose(dp[name], auto_p[name], rtol=1e-12, atol=1e-12, err_msg=name)
    np.testing.assert_allclose(dx, auto_x, rtol=1e-12, atol=1e-12)


def _changes(f, j):
    """How much f's outputs before position j and from j on move when x moves at j alone:
    (largest change before j, smallest change of a position from j on)."""
    x = jax.random.normal(jax.random.key(2), (2, 5, 8), jnp.float64)
    moved = x.at[:, j].add(jax.random.normal(jax.random.key(3), (2, 8), jnp.float64))
    change = jnp.abs(f(x) - f(moved)).max(axis=-1)                  # [n, t]
    return float(change[:, :j].max(initial=0.0)), float(change[:, j:].min())


@pytest.mark.parametrize("j", [0, 2, 4])
def test_attention_is_causal(j, x64):
    """x changed at position j changes no output before j, and every output from j on."""
    layer, p = L.CausalSelfAttention(2), _attention_params(jax.random.key(1), 8)
    before, after = _changes(lambda x: layer.apply(p, x)[0], j)
    assert before == 0.0 and after > 1e-6, (before, after)


def test_the_causality_test_bites(x64):
    """Without the mask (position i sees every j), the same comparison sees a change before j."""
    p = _attention_params(jax.random.key(1), 8)
    before, _ = _changes(lambda x: _reference_attention(p, x, 2, causal=False), 3)
    assert before > 1e-6


def test_attention_dropout_is_row_keyed_and_off_in_evaluation(x64):
    layer = L.CausalSelfAttention(2, dropout=0.5)
    assert layer.needs_key and not L.CausalSelfAttention(2).needs_key and layer.independent_rows
    p = _attention_params(jax.random.key(0), 8)
    x = jax.random.normal(jax.random.key(1), (4, 5, 8), jnp.float64)
    keys = jax.random.split(jax.random.key(2), 4)
    whole = layer.apply(p, x, True, keys)[0]
    half = layer.apply(p, x[2:], True, jax.random.wrap_key_data(
        jax.random.key_data(keys)[2:]))[0]
    np.testing.assert_array_equal(whole[2:], half)             # row i's mask from key i alone
    evaluation = layer.apply(p, x)[0]
    np.testing.assert_allclose(evaluation, _reference_attention(p, x, 2), rtol=1e-12, atol=1e-12)
    assert float(jnp.abs(whole - evaluation).max()) > 1e-3     # training did drop weights


# --- embeddings ----------------------------------------------------------------------------------

def test_embedding_adds_the_gradients_of_repeated_tokens(x64):
    layer = L.Embedding(5, 3)
    p = layer.init(jax.random.key(0), (4,), jnp.float64)
    x = jnp.array([[1, 1, 4, 1], [4, 0, 1, 1]], jnp.int32)
    y, cache = layer.apply(p, x)
    np.testing.assert_array_equal(y, p["w"][x])
    g = jax.random.normal(jax.random.key(1), (2, 4, 3), jnp.float64)
    dp, dx = layer.vjp(p, cache, g)
    want = np.zeros((5, 3))
    for i in range(2):
        for j in range(4):
            want[int(x[i, j])] += np.asarray(g[i, j])
    np.testing.assert_allclose(dp["w"], want, rtol=1e-15, atol=1e-15)
    assert not np.any(np.asarray(dp["w"])[[2, 3]])             # tokens not seen: no gradient
    assert dx.dtype == jax.dtypes.float0 and dx.shape == x.shape   # as jax.vjp's for ints


def test_embedding_gives_nan_for_a_token_outside_the_vocabulary():
    layer = L.Embedding(5, 3)
    p = layer.init(jax.random.key(0), (3,), jnp.float32)
    y, cache = layer.apply(p, jnp.array([[0, 5, -1]]))
    assert not np.isnan(y[0, 0]).any() and np.isnan(y[0, 1:]).all()
    dp, _ = layer.vjp(p, cache, jnp.ones((1, 3, 3)))
    np.testing.assert_array_equal(dp["w"][0], [1.0, 1.0, 1.0])   # the bad ones add nothing
    assert float(jnp.abs(dp["w"][1:]).max()) == 0.0


def test_positional_embedding_adds_the_first_t_rows(x64):
    layer = L.PositionalEmbedding(6)
    p = layer.init(jax.random.key(0), (4, 3), jnp.float64)
    assert p["w"].shape == (6, 3) and abs(float(p["w"].std()) - 0.02) < 0.015
    x = jax.random.normal(jax.random.key(1), (2, 4, 3), jnp.float64)
    y, cache = layer.apply(p, x)
    np.testing.assert_array_equal(y, x + p["w"][None, :4])
    dp, dx = layer.vjp(p, cache, jnp.ones_like(x))
    np.testing.assert_array_equal(dp["w"], np.r_[np.full((4, 3), 2.0), np.zeros((2, 3))])


def test_shapes_reprs_and_init():
    emb, pos, att = L.Embedding(65, 16), L.PositionalEmbedding(8), L.CausalSelfAttention(4)
    assert emb.shape((8,)) == (8, 16) and pos.shape((8, 16)) == (8, 16)
    assert att.shape((8, 16)) == (8, 16)
    assert [repr(l) for l in (emb, pos, att, L.CausalSelfAttention(2, 0.1))] == [
        "Embedding(65, 16)", "PositionalEmbedding(8)", "CausalSelfAttention(4 heads)",
        "CausalSelfAttention(2 heads, dropout 0.1)"]
    p = att.init(jax.random.key(0), (8, 16), jnp.float32)
    assert {k: v.shape for k, v in p.items()} == {"w_qkv": (16, 48), "b_qkv": (48,),
                                                 "w_out": (16, 16), "b_out": (16,)}
    assert emb.init(jax.random.key(0), (8,), jnp.float32)["w"].shape == (65, 16)
    assert hash(L.CausalSelfAttention(2)) == hash(L.CausalSelfAttention(2, 0.0))
    assert all(l.independent_rows for l in (emb, pos, att))


# --- bad arguments, refused by name --------------------------------------------------------------

@pytest.mark.parametrize("make, error, match", [
    (lambda: L.CausalSelfAttention(3).shape((5, 8)), InputError,
     r"CausalSelfAttention\(3 heads\).*heads = 3 does not divide the width d = 8"),
    (lambda: L.CausalSelfAttention(0), InputError, r"CausalSelfAttention\(heads\).*>= 1"),
    (lambda: L.CausalSelfAttention(2, dropout=1.0), InputError,
     r"CausalSelfAttention\(dropout\) must be in \[0, 1\)"),
    (lambda: L.CausalSelfAttention(2).shape((8,)), InputError, r"needs sequences .*\(t, d\)"),
    (lambda: L.Embedding(0, 8), InputError, r"Embedding\(vocab\).*>= 1, got 0"),
    (lambda: L.Embedding(5, 0), InputError, r"Embedding\(d\).*>= 1, got 0"),
    (lambda: L.Embedding(5.0, 8), InputTypeError, r"Embedding\(vocab\).*must be an int"),
    (lambda: L.PositionalEmbedding(4).shape((6, 8)), InputError,
     r"PositionalEmbedding\(4\).*t = 6 positions is longer than max_len = 4"),
    (lambda: L.serial(L.LayerNorm(), L.PositionalEmbedding(4)).shape((6, 8)), InputError,
     r"layer 1 of 2 \(PositionalEmbedding\(4\)\).*longer than max_len"),
    (lambda: L.PositionalEmbedding(0), InputError, r"PositionalEmbedding\(max_len\).*>= 1"),
    (lambda: L.Embedding(5, 3).apply({"w": jnp.zeros((5, 3))}, jnp.zeros((1, 2))),
     InputTypeError, r"Embedding\(5, 3\) takes integer tokens"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_bad_arguments_are_refused_by_name(make, error, match):
    with pytest.raises(error, match=match):
        make()
