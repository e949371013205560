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
                                (x, y), epochs=30, batch_size=32,
                                optimizer=fn.optim.adamw(3e-3, weight_decay=0.1), verbose=False)
    first, last = float(hist["train_loss"][0]), float(hist["train_loss"][-1])
    assert last < 0.5 * first, (first, last)           # a repeated sentence is learnt
    assert float(hist["train_accuracy"][-1]) > 0.8
    said = fn.model.generate(jax.random.key(6), net, params, text.encode("the c"), 19, top_k=1)
    assert text.decode(said) == "the cat sat on the mat. "                # and said again


def _greedy_reference(net, params, prompt, n_new, pad):
    """Greedy decoding, one forward per token in plain Python: the last t tokens, padded on
    the right with `pad` while fewer are known (a causal network never reads them)."""
    t, tokens = net.input_shape[0], list(np.asarray(prompt))
    for _ in range(n_new):
        window = tokens[-t:]
        x = np.array([window + [pad] * (t - len(window))], np.int32)
        logits = np.asarray(fn.model.forward(net, params, x))[0]
        tokens.append(int(np.argmax(logits[len(window) - 1])))
    return np.array(tokens)


@pytest.mark.slow
def test_generate_is_the_greedy_loop_when_only_the_top_token_is_kept(compiles):
    net = _gpt()
    params = fn.model.init(jax.random.key(6), net)
    params = jax.tree.map(lambda v: v if v.ndim < 2 else v * 25, params)   # peaked logits
    prompt = np.array([3, 1, 4], np.int32)
    got = fn.model.generate(jax.random.key(7), net, params, prompt, 12, top_k=1)
    assert got.shape == (15,) and got.dtype == jnp.int32
    np.testing.assert_array_equal(got[:3], prompt)                 # the prompt comes first
    # 3 + 12 tokens pass the context of 8: the window slides; the padding is never read
    np.testing.assert_array_equal(got, _greedy_reference(net, params, prompt, 12, pad=5))
    before = compiles()
    again = fn.model.generate(jax.random.key(8), net, params, np.array([2, 7, 1]), 12, top_k=1)
    assert compiles() == before                                     # one compile per shape
    np.testing.assert_array_equal(again, _greedy_reference(net, params, [2, 7, 1], 12, pad=0))


@pytest.mark.slow
def test_generate_samples_by_key_within_the_vocabulary():
    net = _gpt()
    params = fn.model.init(jax.random.key(9), net)
    draw = lambda seed, **kw: np.asarray(fn.model.generate(                 # noqa: E731
        jax.random.key(seed), net, params, np.array([0]), 40, **kw))
    a, b, c = draw(1), draw(1), draw(2)
    np.testing.assert_array_equal(a, b)                             # same key, same text
    assert (a != c).any() and a.min() >= 0 and a.max() < 11
    assert len(set(draw(3, top_k=2)[1:])) <= 11                     # runs with top_k
    cold = draw(4, temperature=1e-3)
    np.testing.assert_array_equal(cold, draw(5, temperature=1e-3))  # cold: the argmax


@pytest.mark.parametrize("kwargs, match", [
    (dict(prompt=np.array([0.5])), r"prompt must be a non-empty 1-D array of integer tokens"),
    (dict(prompt=np.zeros(0, np.int32)), r"prompt must be a non-empty"),
    (dict(prompt=np.array([11])), r"prompt holds token 11 at 0, outside .*\[0, 11\)"),
    (dict(n_new=0), r"n_new"),
    (dict(top_k=12), r"top_k must be at most the vocabulary's size 11"),
    (dict(temperature=0.0), r"temperature"),
])
def test_bad_generate_arguments_are_refused(kwargs, match):
    net = _gpt()
    params = fn.model.init(jax.random.key(0), net)
    args = {"prompt": np.array([1, 2]), "n_new": 3, **kwargs}
    with pytest.raises((fn.checks.InputError, fn.checks.InputTypeError), match=match):
        fn.model.generate(jax.random.key(1), net, params, args.pop("prompt"), args.pop("n_new"),
                          **args)


@pytest.mark.slow
def test_the_shakespeare_char_command_trains_evaluates_samples_and_saves(tmp_path, monkeypatch,
                                                                         capsys):
    from test_text import SHAKESPEARE, SHARED_DATA
    if not SHAKESPEARE.is_file():
        pytest.skip(f"the shared copy of tiny Shakespeare is not at {SHAKESPEARE}")
    from funcnn.__main__ import main
    monkeypatch.setenv("FUNCNN_DATA", str(SHARED_DATA))
    out = tmp_path / "gpt.svg"
    assert main(["shakespeare-char", "--steps", "30", "--eval-every", "15", "--layers", "1",
                 "--heads", "2", "--width", "16", "--context", "16", "--sample", "40",
                 "--warmup", "5", "--lr", "1e-2",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    lines = [l for l in printed.splitlines() if l.startswith("step ")]
    assert [l.split()[1] for l in lines] == ["15/30", "30/30"]
    val = [float(l.split("val loss ")[1].split()[0]) for l in lines]
    assert val[-1] < val[0] and val[-1] < np.log(65)        # it learns (chance: 4.17)
    assert "bits per character" in lines[-1] and "tokens/s" in lines[-1]
    assert len(printed.split("sample:\n")[1].split("written:")[0]) >= 40
    net = fn.io.load_network(tmp_path / "gpt.npz")
    assert net.output_shape == (16, 65) and out.exists()
    assert (tmp_path / "gpt_history.json").exists()
