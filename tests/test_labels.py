"""Labels of every kind: class ids equal to one-hot rows (loss and the network's hand gradient,
float64, to 1e-12), the new losses' VJPs against jax.grad, each bad label refused by name
before anything compiles, and fit training on ids, real targets and multi-hot rows."""
import xml.etree.ElementTree as ET

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnn as fn
from funcnn.checks import InputError, InputTypeError

M, L, Dataset = fn.math, fn.losses, fn.data.Dataset
CLASSES = {"softmax_cross_entropy": M.identity, "nll": M.log_softmax}   # loss -> its output


def _ids(key, shape, k):
    return jax.random.randint(key, shape, 0, k)


def _w(key, n, dtype):
    """Weights in [0.5, 1.5] with rows 1 and 4 at 0 (padding): they must count for nothing."""
    return jax.random.uniform(key, (n,), dtype, 0.5, 1.5).at[jnp.array([1, 4])].set(0.0)


def _allclose(a, b, rtol=1e-12, atol=0.0):
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(u, v, rtol=rtol, atol=atol)


# --- class ids are one-hot rows, without building them --------------------------------------

@pytest.mark.parametrize("loss", ["softmax_cross_entropy", "nll"])
def test_ids_give_the_one_hot_loss_and_hand_gradient(loss, x64, keys):
    """The whole network's loss, output and hand gradient (model.value_and_grads) from
    int[n] ids equal those from the same labels as one-hot rows, to 1e-12 in float64."""
    net = fn.model.mlp([3, 6, 4], hidden=M.tanh, output=CLASSES[loss], loss=L.LOSSES[loss],
                       init=fn.model.glorot())
    k_p, k_x, k_y, k_w = keys(4)
    params = fn.model.init(k_p, net, jnp.float64)
    x = jax.random.normal(k_x, (7, 3), jnp.float64)
    ids, w = _ids(k_y, (7,), 4), _w(k_w, 7, jnp.float64)
    rows = fn.data.one_hot(ids, 4, jnp.float64)
    with_ids = fn.model.value_and_grads(net, params, Dataset(x, ids), w)
    with_rows = fn.model.value_and_grads(net, params, Dataset(x, rows), w)
    _allclose(with_ids, with_rows)
    _allclose(fn.model.loss(net, params, Dataset(x, ids), w), with_rows[0])
    _allclose(fn.model.grads(net, params, Dataset(x, ids)),
              fn.model.grads(net, params, Dataset(x, rows)))


@pytest.mark.parametrize("loss", ["softmax_cross_entropy", "nll"])
def test_ids_per_position_at_the_loss_level(loss, x64, keys):
    """int[n, t] ids against an output [n, t, k]: the one-hot rows' loss and VJP, jax.grad's
    gradient, and the definition: the mean over positions of each row, the w-weighted mean
    over rows."""
    k_z, k_y, k_w = keys(3)
    lose = L.LOSSES[loss]
    z = 3 * jax.random.normal(k_z, (6, 5, 4), jnp.float64)
    a = z if loss == "softmax_cross_entropy" else M.log_softmax.fn(z)
    ids, w = _ids(k_y, (6, 5), 4), _w(k_w, 6, jnp.float64)
    rows = fn.data.one_hot(ids, 4, jnp.float64)
    assert rows.shape == (6, 5, 4)
    both = jax.jit(lambda y: (lose.fn(a, y, w), lose.vjp(a, y, w)))      # one compile each
    (value, g), (value_rows, g_rows) = both(ids), both(rows)
    _allclose((value, g), (value_rows, g_rows))
    _allclose(g, jax.jit(jax.grad(lose.fn))(a, ids, w), atol=1e-17)
    log_p = np.asarray(jax.nn.log_softmax(z, axis=-1))
    per_position = -np.take_along_axis(log_p, np.asarray(ids)[..., None], -1)[..., 0]   # [n, t]
    w = np.asarray(w)
    _allclose(value, (w * per_position.mean(1)).sum() / w.sum())
    fn.labels.check_labels(ids, lose, (5, 4), "y")              # what check_batch asks
    fn.labels.check_labels(rows, lose, (5, 4), "y")
    with pytest.raises(InputError, match=r"^y holds class id 4 in row 2"):
        fn.labels.check_labels(ids.at[2, 3].set(4), lose, (5, 4), "y")
    with pytest.raises(InputError, match=r"^y is int32\[6\] but \w+ expects class ids "
                       r"int\[6, 5\] in \[0, 4\) or one-hot rows f32\[6, 5, 4\]"):
        fn.labels.check_labels(ids[:, 0].astype(jnp.int32), lose, (5, 4), "y")


@pytest.mark.slow
def test_gradcheck_and_a_step_in_pieces_take_ids(x64):
    """gradcheck casts x to float64 and keeps the ids; backprop in pieces slices them as rows."""
    net = fn.model.mlp([3, 6, 4], hidden=M.tanh, output=M.identity,
                       loss=L.softmax_cross_entropy, init=fn.model.glorot())
    params = fn.model.init(jax.random.key(0), net, jnp.float64)
    x = jax.random.normal(jax.random.key(1), (13, 3), jnp.float64)
    ids = jnp.arange(13) % 4
    report = fn.gradcheck.gradcheck(net, params, Dataset(x, ids))
    assert report.passed and report.worst < 1e-12, report
    w = jnp.ones(13).at[10:].set(0.0)
    whole = fn.model.backprop(net, params, Dataset(x, fn.data.one_hot(ids, 4, jnp.float64)), w,
                              train=False, pieces=1)
    split = fn.model.backprop(net, params, Dataset(x, ids), w, train=False, pieces=3)
    _allclose(split[:3], whole[:3], rtol=1e-12, atol=1e-16)


# --- the new losses against jax.grad, and their values ----------------------------------------

def _real(keys, shape, dtype):
    """An output and targets that put a - y on both sides of huber's delta = 1."""
    k_a, k_y = keys(2)
    return 2 * jax.random.normal(k_a, shape, dtype), jax.random.normal(k_y, shape, dtype)


def _binary(keys, shape, dtype):
    """Logits and labels: multi-hot rows (any count of 1s, all-zero rows too) with a soft
    label in each row's first column."""
    k_z, k_y, k_s = keys(3)
    y = jax.random.bernoulli(k_y, 0.4, shape).astype(dtype)
    y = y.at[..., 0].set(jax.random.uniform(k_s, shape[:-1], dtype))
    return 3 * jax.random.normal(k_z, shape, dtype), y


CASES = {   # loss -> (inputs(keys, shape, dtype) -> (a, y), the output's activation)
    "huber": (_real, None), "mse": (_real, None),
    "sigmoid_binary_cross_entropy": (_binary, None),
    "binary_cross_entropy": (_binary, M.sigmoid),
}


@pytest.mark.parametrize("shape", [(6, 4), (6, 3, 4)], ids=["rows", "positions"])
@pytest.mark.parametrize("loss", sorted(CASES))
def test_vjp_matches_autodiff_float64(loss, shape, x64, keys):
    inputs, act = CASES[loss]
    a, y = inputs(keys, shape, jnp.float64)
    a = a if act is None else act.fn(a)
    w = _w(keys(1)[0], 6, jnp.float64)
    lose = L.LOSSES[loss]
    hand, auto = jax.jit(lambda a: (lose.vjp(a, y, w), jax.grad(lose.fn)(a, y, w)))(a)
    np.testing.assert_allclose(hand, auto, rtol=1e-12, atol=1e-16)
    assert float(np.abs(hand[np.array([1, 4])]).max()) == 0.0            # rows of weight 0


def test_huber_values_and_deltas(x64):
    x = jnp.array([[0.5, -3.0, 1.0, 0.0]])                   # a - y, with y = 0
    h = lambda x, d: np.where(np.abs(x) <= d, 0.5 * x ** 2, d * (np.abs(x) - 0.5 * d))
    assert float(L.huber.fn(x, jnp.zeros_like(x), None)) == pytest.approx(h(x, 1.0).mean(),
                                                                          1e-15)
    two = L.huber_loss(2.0)
    assert float(two.fn(x, jnp.zeros_like(x), None)) == pytest.approx(h(x, 2.0).mean(), 1e-15)
    assert L.huber_loss(1.0) is L.huber and L.huber_loss(2.0) is two      # no recompiles
    assert two.name == "huber(delta=2)" and L.huber.labels == "real"
    with pytest.raises(InputError, match="delta must be finite and > 0"):
        L.huber_loss(0.0)


def test_sigmoid_binary_cross_entropy_is_finite_and_right_at_huge_logits(x64):
    """float32 logits of |z| up to 3e4 (exp(|z|) overflows past 88): the loss and gradient
    are finite and equal the float64 truth, and the loss is optax's form on moderate ones."""
    z = jnp.array([[1e4, -1e4, 0.0, 3e4], [-1e4, 1e4, 20.0, -20.0]], jnp.float32)
    y = jnp.array([[1.0, 0.0, 0.5, 0.0], [1.0, 1.0, 0.0, 1.0]], jnp.float32)
    w = jnp.ones(2, jnp.float32)
    sbce = L.sigmoid_binary_cross_entropy
    value, g = sbce.fn(z, y, w), sbce.vjp(z, y, w)
    assert value.dtype == g.dtype == jnp.float32 and bool(jnp.isfinite(g).all())
    truth = (np.log(2) + 3e4 + 1e4 + 20 + 20 + 2 * np.log1p(np.exp(-20))) / 8   # by hand
    np.testing.assert_allclose(float(value), truth, rtol=1e-7)
    s = 0.5 * (np.tanh(np.asarray(z, np.float64) / 2) + 1)             # sigmoid, no overflow
    np.testing.assert_allclose(g, (s - np.asarray(y, np.float64)) / 8, rtol=1e-6, atol=1e-12)
    z64 = 4 * jax.random.normal(jax.random.key(0), (5, 3), jnp.float64)
    y64 = jax.random.uniform(jax.random.key(1), (5, 3), jnp.float64)
    optax_form = -(y64 * jax.nn.log_sigmoid(z64) + (1 - y64) * jax.nn.log_sigmoid(-z64))
    np.testing.assert_allclose(sbce.fn(z64, y64, None), optax_form.mean(), rtol=1e-13)


# --- label_kind, and the values checked where the data live ---------------------------------

@pytest.mark.parametrize("y, kind", [
    (np.array([2, 0, 1]), "ids"), (jnp.array([[1, 0], [3, 3]], jnp.uint8), "ids"),
    (np.eye(3)[[2, 0]], "one-hot"), (jnp.array([[0.0], [1.0]]), "one-hot"),
    (np.array([[True, False], [False, True]]), "one-hot"),
    (np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]]), "multi-hot"),
    (np.array([[0.3], [-1.2]]), "real"), (jnp.array([[0.5, 0.5]]), "real"),
    (np.array([0.0, 1.0, 1.0]), "one-hot"), ([0, 1, 2], "ids"),
])
def test_label_kind(y, kind):
    assert fn.data.label_kind(y) == kind


def test_label_kind_of_a_traced_y_reads_the_dtype():
    seen = []
    record = lambda y: seen.append(fn.data.label_kind(y)) or y
    jax.eval_shape(record, jnp.zeros((2, 3)))
    jax.eval_shape(record, jnp.zeros(2, jnp.int32))
    assert seen == ["one-hot", "ids"]


@pytest.mark.parametrize("y, k", [
    (np.array([0, 3, 1, -2]), 3), (np.array([[0, 1], [1, 2]]), 2),
    (np.array([[1.0, 0.0], [0.5, 0.5], [1.0, 1.0]]), 0),
    (np.array([[1.0, 0.0, 2.0], [np.nan, 0.0, 1.0]]), 0), (np.array([0.0, 1.0, 0.3]), 0),
])
def test_the_device_check_finds_what_the_host_check_finds(y, k):
    on_host = [int(v) for v in fn.labels._scan(np, y, k)]
    with jax.transfer_guard("disallow"):                    # an implicit copy would raise
        found = jax.device_get(fn.labels._scan_on_device(jax.device_put(y), k))
    assert [int(v) for v in found] == on_host


# --- each bad label refused by name, before anything compiles --------------------------------

def _net(loss, k, output=M.identity):
    return fn.model.mlp([2, 5, k], hidden=M.tanh, output=output, loss=loss)


NETS = {"sce": _net(L.softmax_cross_entropy, 3), "nll": _net(L.nll, 3, M.log_softmax),
        "mse1": _net(L.mse, 1), "mse3": _net(L.mse, 3), "huber1": _net(L.huber, 1),
        "sbce": _net(L.sigmoid_binary_cross_entropy, 3),
        "bce": _net(L.binary_cross_entropy, 3, M.sigmoid)}
ONE_HOT = np.eye(3, dtype=np.float32)[[0, 1, 2, 1]]


@pytest.mark.parametrize("net, y, error, match", [
    ("sce", np.array([0, 1, 3, 2]), InputError, r"^train\.y holds class id 3 in row 2, but "
     r"softmax_cross_entropy reads ids in \[0, 3\), one per class \(for 4 classes make the "
     r"network's output 4 wide\)"),
    ("nll", np.array([0, -1, 1, 2], np.int64), InputError,
     r"^train\.y holds class id -1 in row 1, but nll reads ids in \[0, 3\).*ids count from 0"),
    ("sce", np.array([0.0, 1.0, 2.0, 1.0], np.float32), InputError,
     r"^train\.y is float32\[4\] but softmax_cross_entropy expects class ids int\[4\] in "
     r"\[0, 3\) or one-hot rows f32\[4, 3\]; class ids must be integers: pass "
     r"train\.y\.astype\(np\.int32\)"),
    ("sce", ONE_HOT.astype(np.int32), InputError, r"^train\.y is int32\[4, 3\] but "
     r"softmax_cross_entropy expects .*; integer labels are class ids: pass the ids, "
     r"train\.y\.argmax\(-1\), or the rows as floats"),
    ("sce", np.array([[0, 1], [1, 2], [2, 0], [0, 0]]), InputError,
     r"^train\.y is int64\[4, 2\] but .*give one id per example, int\[4\]"),
    ("sce", np.array([[1.0, 0, 0], [0, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32), InputError,
     r"^train\.y is not one-hot.*row 1 is \[0\.0, 0\.0, 0\.0\]\. Use .*int\[4\]\.$"),
    ("sce", ONE_HOT * 0.5, InputError, r"^train\.y is not one-hot: each row must hold 0s and a "
     r"single 1 .*row 0 is \[0\.5, 0\.0, 0\.0\]\. Use funcnn\.data\.one_hot\(labels, 3\), or "
     r"pass the class ids as integers, int\[4\]\.$"),
    ("nll", ONE_HOT + np.eye(3, dtype=np.float32)[[1, 2, 0, 0]], InputError,
     r"^train\.y is not one-hot.*row 0 is \[1\.0, 1\.0, 0\.0\].*multi-label: train them with "
     r"sigmoid_binary_cross_entropy"),
    ("sce", np.zeros((4, 4), np.float32), InputError,
     r"^train\.y is 4 wide but the network has 3 outputs; make the last layer 4 wide"),
    ("mse1", np.zeros(4, np.float32), InputError, r"^train\.y is float32\[4\] but mse expects "
     r"real targets f32\[4, 1\], shaped like the network's output; one column per output: "
     r"pass train\.y\.reshape\(-1, 1\)$"),
    ("huber1", np.array([1, 0, 1, 1]), InputError, r"^train\.y is int64\[4\] but huber "
     r"expects real targets .*: pass train\.y\.reshape\(-1, 1\)\.astype\(np\.float32\)"),
    ("mse3", np.array([0, 1, 2, 1], np.int32), InputError, r"^train\.y is int32\[4\] but mse "
     r"expects real targets f32\[4, 3\].*integer labels are class ids: pass "
     r"funcnn\.data\.one_hot\(train\.y, 3\), or train with softmax_cross_entropy"),
    ("sbce", ONE_HOT * 2, InputError, r"^train\.y holds a number outside \[0, 1\] in row 0, "
     r"\[2\.0, 0\.0, 0\.0\], but sigmoid_binary_cross_entropy expects rows f32\[4, 3\] of 0s "
     r"and 1s"),
    ("bce", ONE_HOT - 0.5, InputError, r"^train\.y holds a number outside \[0, 1\] in row 0"),
    ("bce", ONE_HOT.astype(np.int8), InputError, r"^train\.y is int8\[4, 3\] but "
     r"binary_cross_entropy expects .*: pass train\.y\.astype\(np\.float32\)"),
])
def test_a_bad_label_is_refused_by_name_before_compiling(net, y, error, match, compiles):
    net = NETS[net]
    x = np.zeros((4, 2), np.float32)
    before = compiles()
    with pytest.raises(error, match=match):
        fn.model.check_batch(net, Dataset(x, y), "train")
    assert compiles() == before


def test_model_functions_refuse_bad_labels_before_compiling(compiles):
    net = NETS["sce"]
    params = fn.model.init(jax.random.key(0), net)
    batch = Dataset(jnp.zeros((4, 2)), jnp.array([0, 1, 3, 2]))
    before = compiles()
    for f in (fn.model.loss, fn.model.grads, fn.model.value_and_grads):
        with pytest.raises(InputError, match=r"^batch\.y holds class id 3 in row 2"):
            f(net, params, batch)
    with pytest.raises(InputError, match=r"^batch\.y holds class id 3 in row 2"):
        fn.gradcheck.gradcheck(net, params, batch)
    assert compiles() == before


@pytest.mark.parametrize("labels, error, match", [
    (jnp.array([0, 3, 1]), InputError, r"^labels holds class id 3 in row 1, but one_hot reads "
     r"ids in \[0, 3\), one per class \(for 4 classes pass k=4\)"),
    (np.array([[0, 1], [-1, 2]]), InputError, r"^labels holds class id -1 in row 1.*count from 0"),
    (jnp.array([0.0, 2.0]), InputTypeError, r"^labels must be integer class ids in \[0, 3\), got "
     r"float32\[2\]; if it holds whole numbers, pass labels\.astype\(np\.int32\)"),
])
def test_one_hot_refuses_what_names_no_class(labels, error, match, compiles):
    before = compiles()
    with pytest.raises(error, match=match):
        fn.data.one_hot(labels, 3)
    assert compiles() == before


def test_under_jit_the_checks_read_shapes_and_dtypes_only():
    one_hot = jax.jit(fn.data.one_hot, static_argnums=1)
    assert one_hot(jnp.array([5, 0]), 3).shape == (2, 3)         # values unknown: no refusal
    with pytest.raises(InputTypeError, match="integer class ids"):
        one_hot(jnp.array([1.0, 0.0]), 3)
    net = NETS["sce"]
    params = fn.model.init(jax.random.key(0), net)
    loss = jax.jit(lambda y: fn.model.loss(net, params, Dataset(jnp.zeros((2, 2)), y)))
    assert jnp.isfinite(loss(jnp.array([1, 2])))
    with pytest.raises(InputError, match=r"^batch\.y is float32\[2\] but softmax_cross_entropy"):
        loss(jnp.array([1.0, 2.0]))


def test_a_loss_of_your_own_reads_real_targets_unless_it_says_otherwise():
    half_mse = L.Loss("half_mse", lambda a, y, w: 0.5 * L.mse.fn(a, y, w),
                      lambda a, y, w: 0.5 * L.mse.vjp(a, y, w))
    assert half_mse.labels == "real"
    net = _net(half_mse, 3)
    fn.model.check_batch(net, Dataset(np.zeros((4, 2)), 7 * ONE_HOT - 3), "train")
    with pytest.raises(InputError, match=r"^train\.y is int32\[4\] but half_mse expects real"):
        fn.model.check_batch(net, Dataset(np.zeros((4, 2)), np.arange(4, dtype=np.int32) % 3),
                             "train")
    with pytest.raises(InputError, match=r"labels='class', not one of 'classes', 'binary'"):
        _net(half_mse._replace(labels="class"), 3)
    with pytest.raises(InputError, match="reads logits and applies the sigmoid itself"):
        _net(L.sigmoid_binary_cross_entropy, 3, M.sigmoid)


# --- metrics read ids --------------------------------------------------------------------------

def test_accuracy_and_confusion_read_ids():
    a = jnp.array([[0.9, 0.1, 0.0, 0.0], [0.2, 0.8, 0.0, 0.0], [0.6, 0.4, 0.0, 0.0],
                   [0.3, 0.7, 0.0, 0.0]])                     # predicted 0, 1, 0, 1
    ids = jnp.array([0, 1, 1, 1])
    rows = fn.data.one_hot(ids, 4)
    assert float(fn.metrics.accuracy(a, ids)) == float(fn.metrics.accuracy(a, rows)) == 0.75
    w = jnp.array([1.0, 1.0, 0.0, 1.0])
    assert float(fn.metrics.accuracy(a, ids, w)) == 1.0
    cm = fn.metrics.confusion_matrix(a, ids)
    assert cm.shape == (4, 4)                                    # k from the output's width
    np.testing.assert_array_equal(cm, fn.metrics.confusion_matrix(a, rows))
    np.testing.assert_array_equal(cm[:2, :2], [[1, 0], [1, 2]])
    positions = jnp.stack([a, a[::-1]], axis=1)                  # [4, 2, 4]: two positions
    by_position = jnp.stack([ids, ids[::-1]], axis=1)
    np.testing.assert_allclose(fn.metrics.accuracy(positions, by_position), 0.75)
    np.testing.assert_array_equal(fn.metrics.confusion_matrix(positions, by_position), 2 * cm)


# --- fit trains on each kind ------------------------------------------------------------------

def _points(n, seed):
    return jax.random.uniform(jax.random.key(seed), (n, 2), jnp.float32, -1.0, 1.0)


@pytest.mark.slow
def test_fit_trains_on_class_ids():
    x = _points(400, 0)
    ids = (x[:, 0] > 0).astype(jnp.int32) + 2 * (x[:, 1] > 0)        # 4 quadrants
    train, test = Dataset(x[:300], ids[:300]), Dataset(x[300:], ids[300:])
    net = fn.model.mlp([2, 16, 4], hidden=M.tanh, output=M.identity,
                       loss=L.softmax_cross_entropy, init=fn.model.glorot())
    params, hist = fn.train.fit(jax.random.key(1), net, fn.model.init(jax.random.key(2), net),
                                train, test, epochs=30, optimizer=fn.optim.adam(0.02),
                                batch_size=32, verbose=False)
    assert float(hist["test_accuracy"][-1]) > 0.9
    out = fn.model.forward(net, params, test.x)
    assert float(fn.metrics.accuracy(out, test.y)) == pytest.approx(
        float(hist["test_accuracy"][-1]))
    assert int(fn.metrics.confusion_matrix(out, test.y).sum()) == 100


@pytest.mark.slow
@pytest.mark.parametrize("loss", [L.mse, L.huber], ids=lambda l: l.name)
def test_fit_trains_on_real_targets(loss):
    x = jnp.linspace(-1, 1, 200, dtype=jnp.float32)[:, None]
    y = jnp.sin(3 * x) + 2.0                                        # not in [0, 1]: real
    net = fn.model.mlp([1, 16, 1], hidden=M.tanh, output=M.identity, loss=loss,
                       init=fn.model.glorot())
    params, hist = fn.train.fit(jax.random.key(3), net, fn.model.init(jax.random.key(4), net),
                                Dataset(x, y), Dataset(x, y), epochs=200,
                                optimizer=fn.optim.adam(0.05), batch_size=50, verbose=False)
    assert "test_accuracy" not in hist and "train_accuracy" not in hist
    assert float(hist["test_loss"][-1]) < 0.01 * float(hist["test_loss"][0])
    assert float(jnp.abs(fn.model.forward(net, params, x) - y).max()) < 0.15


@pytest.mark.slow
def test_fit_trains_on_multi_hot_rows():
    x = _points(400, 5)
    y = jnp.stack([x[:, 0] > 0, x[:, 1] > 0, x.sum(1) > 0], axis=1).astype(jnp.float32)
    assert fn.data.label_kind(y) == "multi-hot"
    net = fn.model.mlp([2, 16, 3], hidden=M.tanh, output=M.identity,
                       loss=L.sigmoid_binary_cross_entropy, init=fn.model.glorot())
    params, hist = fn.train.fit(jax.random.key(6), net, fn.model.init(jax.random.key(7), net),
                                Dataset(x[:300], y[:300]), Dataset(x[300:], y[300:]),
                                epochs=30, optimizer=fn.optim.adam(0.02), batch_size=32,
                                verbose=False)
    assert float(hist["test_loss"][-1]) < 0.3 * float(hist["test_loss"][0])
    predicted = fn.model.forward(net, params, x[300:]) > 0                # logit > 0: p > 1/2
    assert float((predicted == (y[300:] > 0.5)).mean()) > 0.9


# --- the regression example -------------------------------------------------------------------

@pytest.mark.slow
def test_the_regression_example_draws_its_fit(tmp_path, capsys):
    from funcnn.__main__ import main
    out = tmp_path / "regression.svg"
    assert main(["regression", "--epochs", "60", "--quiet", "--no-cache", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "test rmse" in printed
    svg = ET.parse(out).getroot()
    ns = "{http://www.w3.org/2000/svg}"
    assert len(svg.findall(f".//{ns}circle")) >= 100                     # the data points
    assert svg.findall(f".//{ns}polyline")                               # the fitted curve
