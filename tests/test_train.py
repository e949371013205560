"""Training: results, purity, one compile, masking of the last batch, divergence, vmap."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnn as fn

M, L = fn.math, fn.losses


def clojure_setup(seed=1337):
    k_data, k_split, k_init, k_fit = jax.random.split(jax.random.key(seed), 4)
    ds = fn.data.gaussian_clusters(k_data, n_per_class=400)
    train, test = fn.data.split(k_split, ds, train_fraction=0.8)
    net = fn.model.mlp([2, 8, 2], hidden=M.sigmoid, output=M.sigmoid, loss=L.mse,
                       init=fn.model.uniform(0.5))
    return net, fn.model.init(k_init, net), train, test, k_fit


@pytest.mark.slow
def test_the_clojure_run_reaches_095():
    net, params, train, test, k_fit = clojure_setup()
    _, hist = fn.train.fit(k_fit, net, params, train, test, epochs=20, lr=0.5, batch_size=16,
                           verbose=False)
    assert float(hist["test_accuracy"][-1]) > 0.95
    assert float(hist["train_loss"][-1]) < float(hist["train_loss"][0])


@pytest.mark.slow
def test_circles_with_a_sound_recipe_reaches_095():
    k_data, k_split, k_init, k_fit = jax.random.split(jax.random.key(0), 4)
    train, test = fn.data.split(k_split, fn.data.circles(k_data, n=500, factor=0.5, noise=0.05))
    net = fn.model.mlp([2, 4, 8, 1], hidden=M.sigmoid, output=M.sigmoid, loss=L.mse,
                       init=fn.model.uniform(1.0))
    _, hist = fn.train.fit(k_fit, net, fn.model.init(k_init, net), train, test, epochs=150,
                           lr=1.0, batch_size=16, verbose=False)
    assert float(hist["test_accuracy"][-1]) > 0.95


def test_same_key_same_run_bitwise_other_key_other_run():
    runs = []
    for seed in (5, 5, 6):
        net, params, train, test, _ = clojure_setup()
        runs.append(fn.train.fit(jax.random.key(seed), net, params, train, test, epochs=3,
                                 verbose=False))
    (p5, h5), (p5b, h5b), (p6, h6) = runs
    for a, b in zip(jax.tree.leaves((p5, h5)), jax.tree.leaves((p5b, h5b))):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(h5["train_loss"], h6["train_loss"])


def test_inputs_are_unchanged():
    net, params, train, test, k_fit = clojure_setup()
    before = [np.array(v) for v in jax.tree.leaves((params, train, test))]
    fn.train.fit(k_fit, net, params, train, test, epochs=2, verbose=False)
    fn.model.grad_step(net, params, train, 0.5)
    for a, b in zip(before, jax.tree.leaves((params, train, test))):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_fit_compiles_once_per_network_and_shape(compiles):
    net, params, train, test, _ = clojure_setup()
    bigger = fn.data.Dataset(jnp.concatenate([train.x, test.x]), jnp.concatenate([train.y, test.y]))
    fn.train.fit(jax.random.key(1), net, params, train, test, epochs=4, lr=0.5, verbose=False)
    before = compiles()
    fn.train.fit(jax.random.key(2), net, params, train, test, epochs=4, lr=0.1, verbose=False)
    fn.train.fit(jax.random.key(3), net, params, train, test, epochs=4, lr=2, verbose=False)
    assert compiles() == before                           # new key and lr: no new program
    fn.train.fit(jax.random.key(4), net, params, bigger, test, epochs=4, verbose=False)
    assert compiles() == before + 1                       # a new data size: one program


def test_fit_gives_every_epoch_its_own_shuffle():
    k1, k2 = fn.train.epoch_keys(jax.random.key(0), 2)
    rows1, _ = fn.data.batches(k1, 640, 16)
    rows2, _ = fn.data.batches(k2, 640, 16)
    assert not np.array_equal(rows1, rows2)


@pytest.mark.slow
def test_float32_params_train_in_float32_with_x64_on(x64):
    net, params, train, test, k_fit = clojure_setup()      # float32 params and data
    wide = fn.data.Dataset(train.x.astype(jnp.float64), train.y.astype(jnp.float64))
    fitted, hist = fn.train.fit(k_fit, net, params, wide, test, epochs=2, verbose=False)
    assert {v.dtype for v in jax.tree.leaves(fitted)} == {jnp.dtype(jnp.float32)}


@pytest.mark.slow
def test_last_partial_batch_is_used_and_masked(x64):
    """10 rows, batch 4: three steps of 4, 4 and 2 real rows, equal to grad_step by hand."""
    net = fn.model.mlp([2, 3, 2], hidden=M.tanh, output=M.sigmoid, loss=L.mse)
    ds = fn.data.gaussian_clusters(jax.random.key(0), n_per_class=5)
    ds = fn.data.Dataset(ds.x.astype(jnp.float64), ds.y.astype(jnp.float64))
    params = fn.model.init(jax.random.key(1), net, jnp.float64)
    fitted, hist = fn.train.fit(jax.random.key(2), net, params, ds, epochs=1, lr=0.3,
                                batch_size=4, verbose=False)
    epoch_key = jax.random.split(jax.random.key(2), 1)[0]     # the key fit gives epoch 1
    rows, w = fn.data.batches(epoch_key, 10, 4)
    p, losses = params, []
    for r, m in zip(np.asarray(rows), np.asarray(w)):
        real = r[m == 1]
        p, l = fn.model.grad_step(net, p, fn.data.Dataset(ds.x[real], ds.y[real]), 0.3)
        losses.append(float(l) * len(real))
    assert len(losses) == 3 and (np.asarray(w).sum(axis=1) == [4, 4, 2]).all()
    for a, b in zip(jax.tree.leaves(fitted), jax.tree.leaves(p)):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    assert float(hist["train_loss"][0]) == pytest.approx(sum(losses) / 10, rel=1e-12)


@pytest.mark.slow
def test_divergence_is_reported_with_the_first_bad_epoch():
    net = fn.model.mlp([2, 8, 2], hidden=M.relu, output=M.identity, loss=L.mse)
    ds = fn.data.gaussian_clusters(jax.random.key(0), n_per_class=50)
    params = fn.model.init(jax.random.key(1), net)
    with pytest.raises(fn.train.TrainingDiverged, match=r"epoch \d+ \(lr=1e\+06\)") as err:
        fn.train.fit(jax.random.key(2), net, params, ds, epochs=5, lr=1e6, verbose=False)
    assert err.value.history["train_loss"].shape == (5,)
    assert not np.isfinite(np.asarray(err.value.history["train_loss"])).all()


def test_one_line_per_epoch_is_printed(capfd):
    net, params, train, test, k_fit = clojure_setup()
    fn.train.fit(k_fit, net, params, train, test, epochs=3, verbose=True)
    jax.effects_barrier()
    lines = [l for l in capfd.readouterr().out.splitlines() if l.startswith("epoch")]
    assert [l.split()[1] for l in lines] == ["1/3", "2/3", "3/3"]
    assert "test accuracy" in lines[0] and "test mse" in lines[0] and "train mse" in lines[0]


@pytest.mark.slow
def test_vmap_over_fit_trains_many_networks_and_matches_single_runs(capfd):
    net, _, train, test, _ = clojure_setup()
    init_keys = jax.random.split(jax.random.key(10), 4)
    fit_keys = lambda: jax.random.split(jax.random.key(11), 4)   # fresh: a key is used once
    params = jax.vmap(lambda k: fn.model.init(k, net))(init_keys)
    many, hist = jax.vmap(lambda k, p: fn.train.fit(k, net, p, train, test, epochs=3))(
        fit_keys(), params)
    jax.effects_barrier()
    assert hist["test_accuracy"].shape == (4, 3)
    assert "epoch" not in capfd.readouterr().out             # no line per member under vmap
    jax.vmap(jax.jit(lambda k, p: fn.train.fit(k, net, p, train, test, epochs=2)))(
        fit_keys(), params)
    jax.effects_barrier()
    assert "epoch" not in capfd.readouterr().out             # nor under vmap of jit
    one, hist_one = fn.train.fit(fit_keys()[2], net, jax.tree.map(lambda v: v[2], params),
                                 train, test, epochs=3, verbose=False)
    np.testing.assert_allclose(hist["train_loss"][2], hist_one["train_loss"], rtol=1e-5)
    # fit_many: the same networks, and one summary line per epoch
    _, hist_many = fn.train.fit_many(fit_keys(), net, params, train, test, epochs=3)
    jax.effects_barrier()
    lines = [l for l in capfd.readouterr().out.splitlines() if l.startswith("epoch")]
    assert len(lines) == 3 and "[" in lines[0]
    np.testing.assert_allclose(hist_many["train_loss"], hist["train_loss"], rtol=1e-5)


def _bad(**change):
    net, params, train, test, key = clojure_setup()
    args = dict(key=key, net=net, params=params, train=train, test=test, epochs=2, lr=0.5,
                batch_size=16)
    args.update(change)
    return args


WRONG_NET = fn.model.mlp([2, 5, 2], hidden=M.sigmoid, output=M.sigmoid, loss=L.mse)
TRAIN = fn.data.gaussian_clusters(jax.random.key(99), n_per_class=8)


@pytest.mark.parametrize("change, error, match", [
    (dict(batch_size=0), ValueError, "batch_size must be >= 1"),
    (dict(batch_size=2.5), TypeError, "batch_size must be an int"),
    (dict(epochs=0), ValueError, "epochs must be >= 1"),
    (dict(lr=0.0), ValueError, "lr"),
    (dict(lr=-1.0), ValueError, "lr"),
    (dict(lr=float("nan")), ValueError, "lr"),
    (dict(lr=float("inf")), ValueError, "lr"),
    (dict(lr="fast"), TypeError, r"lr \(learning rate\) must be a number"),
    (dict(key=0), TypeError, "jax.random.key"),
    (dict(key=None), TypeError, "jax.random.key"),
    (dict(params=fn.model.init(jax.random.key(5), WRONG_NET)), ValueError, r"params\[0\]\['w'\]"),
    (dict(train=fn.data.Dataset(TRAIN.x[:, :1], TRAIN.y)), ValueError, "train.x has 1 features"),
    (dict(train=fn.data.Dataset(TRAIN.x, TRAIN.y[:3])), ValueError, "train.x has 16 rows"),
    (dict(train=fn.data.Dataset(TRAIN.x, np.argmax(TRAIN.y, 1).astype(np.int32))), ValueError,
     r"train\.y is int32\[16\] but mse expects real targets f32\[16, 2\]"),   # not ids
    (dict(test=fn.data.Dataset(TRAIN.x, jnp.eye(3)[jnp.arange(16) % 3])), ValueError,
     "test.y is 3 wide"),
    (dict(params=(dict(w=jnp.zeros((2, 8), jnp.int32), b=jnp.zeros(8, jnp.int32)),
                  dict(w=jnp.zeros((8, 2), jnp.int32), b=jnp.zeros(2, jnp.int32)))),
     TypeError, "floating point"),
    (dict(train=fn.data.Dataset(TRAIN.x, TRAIN.y.at[2, 0].set(jnp.inf))), ValueError,
     "train.y holds NaN or Inf"),
    (dict(train=fn.data.Dataset(TRAIN.x.at[3, 1].set(jnp.nan), TRAIN.y)), ValueError, "row 3"),
    (dict(train=fn.data.Dataset(TRAIN.x[:0], TRAIN.y[:0])), ValueError, "empty"),
])
def test_bad_input_is_refused_before_compiling(change, error, match, compiles):
    args = _bad(**change)
    before = compiles()
    with pytest.raises(error, match=match):
        fn.train.fit(args.pop("key"), **args)
    assert compiles() == before                             # nothing was compiled


@pytest.mark.slow
def test_a_regressions_history_has_its_losses_and_the_lines_show_rmse(capfd):
    """Real targets: no accuracy (there are no classes), the mse and its square root."""
    k_x, k_n, k_init, k_fit = jax.random.split(jax.random.key(4), 4)
    x = jax.random.uniform(k_x, (96, 1), minval=-1, maxval=1)
    ds = fn.data.Dataset(x, jnp.sin(3 * x) + 0.1 * jax.random.normal(k_n, (96, 1)))
    net = fn.model.mlp([1, 16, 1], hidden=M.tanh, output=M.identity, loss=L.mse)
    _, hist = fn.train.fit(k_fit, net, fn.model.init(k_init, net), ds, ds, epochs=30,
                           optimizer=fn.optim.adam(1e-2), verbose=10)
    assert sorted(hist) == ["test_loss", "train_loss"]
    assert float(hist["test_loss"][-1]) < 0.5 * float(hist["test_loss"][0])
    line = [l for l in capfd.readouterr().out.splitlines() if l.startswith("epoch 30/30")][0]
    rmse = float(line.split("test mse ")[1].split("(rmse ")[1].split(")")[0])
    assert "accuracy" not in line and rmse == pytest.approx(float(hist["test_loss"][-1]) ** 0.5,
                                                            abs=1e-4)


@pytest.mark.slow
def test_class_ids_train_as_their_one_hot_rows(x64):
    """y: int[n] and y: f64[n, k] one-hot give bitwise-close runs and the same accuracy."""
    _, _, train, test, _ = clojure_setup()
    net = fn.model.mlp([2, 8, 2], hidden=M.tanh, output=M.identity, loss=L.softmax_cross_entropy)
    params = fn.model.init(jax.random.key(0), net, jnp.float64)
    ids = lambda ds: fn.data.Dataset(ds.x, jnp.argmax(ds.y, axis=1))          # noqa: E731
    p1, h1 = fn.train.fit(jax.random.key(5), net, params, train, test, epochs=3, verbose=False)
    p2, h2 = fn.train.fit(jax.random.key(5), net, params, ids(train), ids(test), epochs=3,
                          verbose=False)
    assert sorted(h1) == sorted(h2)
    for name in h1:
        np.testing.assert_allclose(h2[name], h1[name], rtol=1e-12, atol=1e-15)
    for a, b in zip(jax.tree.leaves(p2), jax.tree.leaves(p1)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
