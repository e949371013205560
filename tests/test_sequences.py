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


# --- fit_steps on a text: seed 3's loop drawing windows -----------------------------------------

def _bigram_net(vocab, t):
    return fn.model.network(L.serial(L.Embedding(vocab, 8), L.Dense(vocab)), input_shape=(t,),
                            loss=fn.losses.softmax_cross_entropy)


def test_fit_steps_on_a_texts_ids_learns_it():
    """A text repeating 'abcd': each step draws windows; the next character is then certain."""
    ids = jnp.asarray(np.tile(np.arange(4), 50), jnp.int32)
    net = _bigram_net(4, 8)
    params = fn.model.init(jax.random.key(0), net)
    opt = fn.optim.adam(0.05)
    _, _, losses = fn.train.fit_steps(jax.random.key(1), net, params, ids, steps=60,
                                      batch_size=4, optimizer=opt)
    assert losses.shape == (60,)
    assert losses[0] > 1.0 and losses[-1] < 0.1, losses[[0, -1]]


def test_fit_steps_in_two_calls_equals_one_call():
    """state= and start_step= go on where a call stopped: the same batches, the same params."""
    ids = jax.random.randint(jax.random.key(0), (300,), 0, 6)
    net = _bigram_net(6, 5)
    params = fn.model.init(jax.random.key(1), net)
    opt = fn.optim.adamw(fn.schedules.warmup_cosine_decay(0.0, 0.01, 3, 10))
    key = jax.random.key(2)
    run = lambda p, **kw: fn.train.fit_steps(key, net, p, ids, batch_size=3, optimizer=opt,
                                             **kw)
    whole, _, losses = run(params, steps=10)
    half, state, first = run(params, steps=4)
    rest, _, second = run(half, steps=6, state=state, start_step=4)
    np.testing.assert_array_equal(np.concatenate([first, second]), losses)
    for a, b in zip(jax.tree.leaves(rest), jax.tree.leaves(whole), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_run_in_chunks_compiles_once(compiles):
    """start_step is an argument of the compiled loop, not a static one: chunk after chunk
    runs the same program (shakespeare-char's 8 chunks between evaluations)."""
    ids = jax.random.randint(jax.random.key(0), (100,), 0, 5)
    net = _bigram_net(5, 4)
    params = fn.model.init(jax.random.key(1), net)
    opt = fn.optim.adam(0.01)
    state = None
    for start in (0, 3, 6):
        params, state, _ = fn.train.fit_steps(jax.random.key(2), net, params, ids, steps=3,
                                              batch_size=2, optimizer=opt, state=state,
                                              start_step=start, total_steps=9)
        if start == 0:
            before = compiles()
    assert compiles() == before


def test_fit_steps_prints_progress_of_the_whole_run(capsys):
    ids = jax.random.randint(jax.random.key(0), (100,), 0, 5)
    net = _bigram_net(5, 4)
    params = fn.model.init(jax.random.key(1), net)
    fn.train.fit_steps(jax.random.key(2), net, params, ids, steps=4, lr=0.1, batch_size=2,
                       progress_every=2, start_step=6, total_steps=20)
    lines = [l.split()[:2] for l in capsys.readouterr().out.splitlines()]
    assert lines == [["step", "8/20"], ["step", "10/20"]], lines


@pytest.mark.parametrize("train, error, match", [
    (jnp.linspace(0, 1, 50), fn.checks.InputTypeError, r"train must hold a text's ids"),
    (jnp.arange(4), fn.checks.InputError, r"4 ids, fewer than a window .* context \+ 1 = 6"),
])
def test_fit_steps_refuses_a_text_it_cannot_draw_from(train, error, match):
    net = _bigram_net(5, 5)
    params = fn.model.init(jax.random.key(0), net)
    with pytest.raises(error, match=match):
        fn.train.fit_steps(jax.random.key(1), net, params, train, steps=2, lr=0.1)
