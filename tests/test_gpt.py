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
                 "--warmup", "5", "--lr", "1e-2", "--progress-every", "10",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    lines = [l for l in printed.splitlines() if l.startswith("step ")]
    assert [l.split()[1] for l in lines] == ["15/30", "30/30"]
    progress = [l.split()[1] for l in printed.splitlines() if l.startswith("  step ")]
    assert progress == ["10/30", "20/30", "30/30"]               # a line between evaluations
    val = [float(l.split("val loss ")[1].split()[0]) for l in lines]
    assert val[-1] < val[0] and val[-1] < np.log(65)        # it learns (chance: 4.17)
    assert "bits per character" in lines[-1] and "tokens/s" in lines[-1]
    assert len(printed.split("sample:\n")[1].split("written:")[0]) >= 40
    net = fn.io.load_network(tmp_path / "gpt.npz")
    assert net.output_shape == (16, 65) and out.exists()
    assert (tmp_path / "gpt_history.json").exists()


def _reference_gpt(params, x, heads):
    """GPT-2's forward written again in plain jnp, from the same params (llm.c's test against
    PyTorch, here against this): no funcnn layer is called."""
    emb, pos, *blocks, ln_f, head = params

    def layer_norm(p, v, eps=1e-5):
        mu = v.mean(-1, keepdims=True)
        var = ((v - mu) ** 2).mean(-1, keepdims=True)
        return p["gamma"] * (v - mu) / jnp.sqrt(var + eps) + p["beta"]

    def attention(p, v):
        n, t, d = v.shape
        q, k, val = jnp.split(v @ p["w_qkv"] + p["b_qkv"], 3, axis=-1)
        split = lambda a: a.reshape(n, t, heads, d // heads).transpose(0, 2, 1, 3)  # noqa: E731
        q, k, val = split(q), split(k), split(val)
        scores = q @ k.transpose(0, 1, 3, 2) / jnp.sqrt(d // heads)
        scores = jnp.where(jnp.tril(jnp.ones((t, t), bool)), scores, -jnp.inf)
        out = jax.nn.softmax(scores, axis=-1) @ val                  # [n, heads, t, d/heads]
        return out.transpose(0, 2, 1, 3).reshape(n, t, d) @ p["w_out"] + p["b_out"]

    h = emb["w"][x] + pos["w"][:x.shape[1]]
    for (ln1, attn), (ln2, fc, proj) in blocks:
        h = h + attention(attn, layer_norm(ln1, h))
        h = h + jax.nn.gelu(layer_norm(ln2, h) @ fc["w"] + fc["b"], approximate=True) \
            @ proj["w"] + proj["b"]
    return layer_norm(ln_f, h) @ head["w"] + head["b"]


def _reference(params, x, heads):
    with jax.numpy_rank_promotion("allow"):     # plain jnp broadcasting, as written above
        return _reference_gpt(params, x, heads)


def _reference_loss(params, x, y, heads):
    log_p = jax.nn.log_softmax(_reference(params, x, heads), axis=-1)
    return -jnp.take_along_axis(log_p, y[..., None], axis=-1).mean()


@pytest.mark.slow
def test_a_gpt_is_the_plain_jnp_gpt_forward_backward_and_ten_adamw_steps(x64):
    """llm.c's parity test: the same weights in funcnn's GPT and in a GPT written in plain jnp
    inside this test give the same logits, loss and gradients, then the same losses over 10
    AdamW steps on one batch (the reference's steps by jax.grad and its own AdamW)."""
    net = _gpt()
    k_p, k_x, k_y = jax.random.split(jax.random.key(11), 3)
    params = fn.model.init(k_p, net, jnp.float64)
    params = jax.tree.map(lambda v: v if v.ndim < 2 else v * 25, params)   # sharper softmax
    x = jax.random.randint(k_x, (4, 8), 0, 11)
    y = jax.random.randint(k_y, (4, 8), 0, 11)
    np.testing.assert_allclose(fn.model.forward(net, params, x), _reference(params, x, 2),
                               rtol=1e-12, atol=1e-12)
    loss, grads, _ = fn.model.value_and_grads(net, params, (x, y))
    ref_loss, ref_grads = jax.value_and_grad(_reference_loss)(params, x, y, 2)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-13)
    first = loss
    scale = max(float(jnp.abs(g).max()) for g in jax.tree.leaves(ref_grads))
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12 * scale)
    # 10 AdamW steps: funcnn's (hand gradients, fn.optim.adamw) and the reference's (jax.grad,
    # AdamW written out: m, v, bias corrections, decoupled decay), loss by loss
    opt = fn.optim.adamw(1e-2, b1=0.9, b2=0.99, eps=1e-8, weight_decay=0.1)
    state, p_ref = opt.init(params), params
    m = v = jax.tree.map(jnp.zeros_like, params)
    for t in range(1, 11):
        loss, grads, _ = fn.model.value_and_grads(net, params, (x, y))
        updates, state = opt.update(grads, state, params)
        params = fn.optim.apply_updates(params, updates)
        ref_loss, g = jax.value_and_grad(_reference_loss)(p_ref, x, y, 2)
        m = jax.tree.map(lambda m, g: 0.9 * m + 0.1 * g, m, g)
        v = jax.tree.map(lambda v, g: 0.99 * v + 0.01 * g * g, v, g)
        p_ref = jax.tree.map(lambda p, m, v: p - 1e-2 * ((m / (1 - 0.9 ** t)) / (
            jnp.sqrt(v / (1 - 0.99 ** t)) + 1e-8) + 0.1 * p), p_ref, m, v)
        np.testing.assert_allclose(loss, ref_loss, rtol=1e-10, err_msg=f"step {t}")
    # the same weights after; the key bias has a true gradient of 0 (a softmax ignores a
    # constant added to a row of scores), so it holds rounding noise (~1e-9) on both sides
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(p_ref), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-8)
    assert float(fn.model.loss(net, params, (x, y))) < 0.5 * float(first)   # and it learnt
