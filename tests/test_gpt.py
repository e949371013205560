"""A small GPT built from the sequence layers, as issue 29's recipe composes them: tokens in,
a row of logits per position out, the whole network's hand gradient refereed by jax.grad."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnn as fn

L = fn.layers


def _gpt(vocab=11, d=16, heads=2, context=8, blocks=2, dropout=0.0):
    block = lambda: L.serial(                                           # noqa: E731
        L.Residual(L.serial(L.LayerNorm(), L.CausalSelfAttention(heads, dropout=dropout))),
        L.Residual(L.serial(L.LayerNorm(), L.Dense(4 * d, fn.math.gelu), L.Dense(d))))
    return fn.model.network(L.serial(L.Embedding(vocab, d), L.PositionalEmbedding(context),
                                     *[block() for _ in range(blocks)], L.LayerNorm(),
                                     L.Dense(vocab)),
                            input_shape=(context,), loss=fn.losses.softmax_cross_entropy)


def test_a_gpt_takes_tokens_and_gives_a_row_of_logits_per_position():
    net = _gpt()
    assert net.layer.takes_tokens and net.output_shape == (8, 11)
    params = fn.model.init(jax.random.key(0), net)
    tokens = jax.random.randint(jax.random.key(1), (3, 8), 0, 11)
    assert fn.model.forward(net, params, tokens).shape == (3, 8, 11)
    with pytest.raises(fn.checks.InputTypeError, match=r"x must be integer tokens .*Embedding"):
        fn.model.forward(net, params, tokens.astype(jnp.float32))


@pytest.mark.slow
@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_a_whole_gpt_matches_autodiff_float64(dropout, x64):
    net = _gpt(dropout=dropout)
    k_p, k_x, k_y, k_d = jax.random.split(jax.random.key(2), 4)
    params = fn.model.init(k_p, net, jnp.float64)
    # weights of scale 0.5 (not GPT-2's 0.02): a softmax far from uniform, a sharper check
    params = jax.tree.map(lambda v: v if v.ndim < 2 else v * 25, params)
    x = jax.random.randint(k_x, (4, 8), 0, 11)
    y = jax.random.randint(k_y, (4, 8), 0, 11)
    report = fn.gradcheck.gradcheck(net, params, (x, y), key=k_d)
    assert report.passed and report.worst < 1e-9, report


@pytest.mark.slow
def test_a_gpt_learns_the_next_character_of_a_text(tmp_path):
    path = tmp_path / "abc.txt"
    path.write_text("the cat sat on the mat. " * 40, encoding="utf-8")
    text = fn.data.text(path)
    net = _gpt(vocab=len(text.vocab))
    x, y = fn.data.windows(jax.random.key(3), text.train, 256, 8)
    params, hist = fn.train.fit(jax.random.key(4), net, fn.model.init(jax.random.key(5), net),
                                (x, y), epochs=8, batch_size=32,
                                optimizer=fn.optim.adamw(3e-3, weight_decay=0.1), verbose=False)
    first, last = float(hist["train_loss"][0]), float(hist["train_loss"][-1])
    assert last < 0.5 * first, (first, last)           # a repeated sentence is learnt
    assert float(hist["train_accuracy"][-1]) > 0.8
