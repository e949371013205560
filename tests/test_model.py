"""The network: description, init, forward, and hand-written backprop refereed by jax.grad."""
import random
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnn as fn

M, L = fn.math, fn.losses
HIDDEN = [M.sigmoid, M.tanh, M.relu, M.identity]
HEADS = [(M.sigmoid, L.mse), (M.identity, L.mse), (M.tanh, L.mse), (M.softmax, L.mse),
         (M.identity, L.softmax_cross_entropy), (M.log_softmax, L.nll),
         (M.sigmoid, L.binary_cross_entropy), (M.softmax, L.binary_cross_entropy)]
INITS = [fn.model.uniform(0.5), fn.model.glorot(), fn.model.he(), fn.model.lecun()]


def _case(seed, depth, hidden, head, dtype):
    """A network of `depth` layers (widths 4 or 6: few shapes, few compiles) and a batch."""
    pick = random.Random(seed)
    sizes = [3] + [pick.choice([4, 6]) for _ in range(depth - 1)] + [3]
    net = fn.model.mlp(sizes, hidden=hidden, output=head[0], loss=head[1],
                       init=pick.choice(INITS))
    k_p, k_x, k_y = jax.random.split(jax.random.key(seed), 3)
    params = fn.model.init(k_p, net, dtype)
    x = jax.random.normal(k_x, (5, 3), dtype)
    y = fn.data.one_hot(jax.random.randint(k_y, (5,), 0, 3), 3, dtype)
    return net, params, fn.data.Dataset(x, y)


def _worst_errors_over_seeds(net, seeds, dtype):
    """Hand vs jax.grad for `seeds` random params and batches at once (vmap: one compile).
    The draws come from NumPy so that only the network under test is compiled."""
    rng = np.random.default_rng(sum(net.sizes) * 1000 + seeds)
    shapes = jax.eval_shape(lambda: fn.model.init(jax.random.key(0), net, dtype))
    def draw(s):                        # init-sized weights, N(0, 1/d_in): softmax not saturated
        scale = 1 / np.sqrt(s.shape[0]) if len(s.shape) == 2 else 0.1
        return jnp.asarray(scale * rng.normal(size=(seeds, *s.shape)), dtype)
    params = jax.tree.map(draw, shapes)
    k = net.sizes[-1]
    x = jnp.asarray(rng.normal(size=(seeds, 5, net.sizes[0])), dtype)
    y = jnp.asarray(np.eye(k)[rng.integers(0, k, size=(seeds, 5))], dtype)
    hand, auto = jax.vmap(lambda p, b: fn.gradcheck.both_grads(net, p, b, jnp.ones(5, dtype)))(
        params, fn.data.Dataset(x, y))
    hand, auto = jax.tree.map(np.asarray, (hand, auto))   # slice on the host, not per op
    return [max(fn.gradcheck.relative_error(h[i], a[i]) for i in range(seeds))
            for h, a in zip(jax.tree.leaves(hand), jax.tree.leaves(auto))]


@pytest.mark.parametrize("hidden", HIDDEN, ids=lambda a: a.name)
@pytest.mark.parametrize("head", HEADS, ids=lambda h: f"{h[0].name}-{h[1].name}")
@pytest.mark.slow
def test_hand_gradients_match_autodiff_float64(hidden, head, x64):
    """Every hidden activation x output/loss pair, depths 1 to 5, random widths, 16 seeds."""
    i = HIDDEN.index(hidden) + len(HIDDEN) * HEADS.index(head)
    depth = 1 + i % 5                                     # every depth, across the pairs
    net, _, _ = _case(i * 10 + depth, depth, hidden, head, jnp.float64)
    errors = _worst_errors_over_seeds(net, 16, jnp.float64)
    assert max(errors) < 1e-9, (net, errors)


def _mlp_terms(net) -> int:
    """The longest chain of sums in an MLP's hand gradient (tests/conftest.py's K): each
    layer's dot product forward and back (d_in, then d_out terms), the batch's 5 rows summed
    into dW, and about 4 for each activation and the loss's exp and log."""
    return 2 * sum(net.sizes) + 5 + 4 * (len(net.sizes) + 1)


@pytest.mark.parametrize("hidden", HIDDEN, ids=lambda a: a.name)
@pytest.mark.parametrize("head", HEADS, ids=lambda h: f"{h[0].name}-{h[1].name}")
@pytest.mark.slow
def test_hand_gradients_match_autodiff_float32(hidden, head, x64, float32_bound,
                                               float32_errors, to64):
    """The float32 hand gradient against the float64 truth (jax.grad on the same numbers in
    float64), within the rounding bound of its longest chain of sums; 16 more draws at once."""
    i = HIDDEN.index(hidden) + len(HIDDEN) * HEADS.index(head)
    net, params, batch = _case(7 + i, 1 + i % 5, hidden, head, jnp.float32)
    bound = float32_bound(_mlp_terms(net))
    hand = fn.model.grads(net, params, batch)
    truth = jax.grad(lambda p: fn.model.loss(net, p, to64(batch)))(to64(params))
    errors = float32_errors(hand, truth)
    assert max(errors.values()) < bound, (net, errors, bound)
    hand, truth = _grads_over_seeds(net, 16, float32=True), _grads_over_seeds(net, 16)
    worst = max(max(float32_errors(jax.tree.map(lambda v: v[s], hand),
                                   jax.tree.map(lambda v: v[s], truth)).values())
                for s in range(16))
    assert worst < bound, (net, worst, bound)


def _grads_over_seeds(net, seeds, float32=False):
    """jax.grad's gradients (float64) or the hand ones (float32) for `seeds` random params
    and batches (the same numbers, drawn in float64 by NumPy; vmap: one compile)."""
    rng = np.random.default_rng(sum(net.sizes) * 1000 + seeds)
    shapes = jax.eval_shape(lambda: fn.model.init(jax.random.key(0), net, jnp.float64))
    draw = lambda s: (1 / np.sqrt(s.shape[0]) if len(s.shape) == 2 else 0.1) * rng.normal(
        size=(seeds, *s.shape))
    params = jax.tree.map(draw, shapes)
    k = net.sizes[-1]
    x = rng.normal(size=(seeds, 5, net.sizes[0]))
    y = np.eye(k)[rng.integers(0, k, size=(seeds, 5))]
    dtype = jnp.float32 if float32 else jnp.float64
    params, batch = jax.tree.map(lambda v: jnp.asarray(v, dtype), (params, (x, y)))
    grads = (lambda p, b: fn.model.grads(net, p, fn.data.Dataset(*b))) if float32 else (
        lambda p, b: jax.grad(lambda q: fn.model.loss(net, q, fn.data.Dataset(*b)))(p))
    return jax.vmap(grads)(params, batch)


@pytest.mark.slow
def test_both_transposes_of_dense_vjp_match_autodiff(x64):
    """x^T g takes a copied x^T for a small x and x.T as it is for a large one (see
    backend.copied): a first layer above the size, a second below it, both refereed."""
    net = fn.model.mlp([500, 6, 3], hidden=M.tanh, output=M.identity,
                       loss=L.softmax_cross_entropy, init=fn.model.glorot())
    k_p, k_x, k_y = jax.random.split(jax.random.key(5), 3)
    x = jax.random.normal(k_x, (40, 500), jnp.float64)
    assert x.size > fn.backend.COPY_TRANSPOSE_MAX_ELEMENTS >= 40 * 6                  # one branch each
    batch = fn.data.Dataset(x, fn.data.one_hot(jax.random.randint(k_y, (40,), 0, 3), 3,
                                               jnp.float64))
    report = fn.gradcheck.gradcheck(net, fn.model.init(k_p, net, jnp.float64), batch)
    assert report.passed and report.worst < 1e-9, report


@pytest.mark.slow
def test_weighted_gradients_match_autodiff(x64):
    net, params, batch = _case(3, 3, M.sigmoid, HEADS[0], jnp.float64)
    w = jnp.array([1.0, 1.0, 0.0, 1.0, 0.0])
    assert fn.gradcheck.gradcheck(net, params, batch, w).worst < 1e-9


@pytest.mark.slow
def test_gradcheck_bites_on_a_wrong_vjp(x64):
    broken = M.Activation("broken_tanh", M.tanh.fn, lambda z, a, g: g * (1.0 - a))
    net, params, batch = _case(4, 2, broken, HEADS[0], jnp.float64)
    report = fn.gradcheck.gradcheck(net, params, batch)
    assert not report.passed and report.errors["[0]['w']"] > 1e-3
    assert "FAIL" in repr(report)
    ok = fn.gradcheck.gradcheck(*_case(4, 2, M.tanh, HEADS[0], jnp.float64))
    assert ok.passed and "PASS" in repr(ok) and "params[1]['w']" in repr(ok)


@pytest.mark.slow
def test_the_documented_session_works_as_written():
    k_data, k_split, k_init, k_fit = jax.random.split(jax.random.key(1337), 4)
    ds = fn.data.gaussian_clusters(k_data, n_per_class=400)
    train, test = fn.data.split(k_split, ds, train_fraction=0.8)
    net = fn.model.mlp([2, 8, 2], hidden=fn.math.sigmoid, output=fn.math.sigmoid,
                       loss=fn.losses.mse, init=fn.model.uniform(0.5))
    params = fn.model.init(k_init, net)
    assert [(p["w"].shape, p["b"].shape) for p in params] == [((2, 8), (8,)), ((8, 2), (2,))]
    assert all(float(jnp.abs(v).max()) <= 0.5 for v in jax.tree.leaves(params))
    assert fn.model.forward(net, params, test.x).shape == (160, 2)
    l = fn.model.loss(net, params, test)
    assert l.shape == () and 0.0 < float(l) < 1.0
    g = fn.model.grads(net, params, train)
    g_auto = jax.grad(fn.model.loss, argnums=1)(net, params, train)
    assert jax.tree.structure(g) == jax.tree.structure(params)
    for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g_auto)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)
    params1, l1 = fn.model.grad_step(net, params, train, 0.5)
    assert float(l1) == pytest.approx(float(fn.model.loss(net, params, train)), rel=1e-6)
    assert float(fn.model.loss(net, params1, train)) < float(l1)     # one step goes downhill
    params2, hist = fn.train.fit(k_fit, net, params, train, test, epochs=20, lr=0.5,
                                 batch_size=16, verbose=False)
    assert {k: v.shape for k, v in hist.items()} == {
        "test_accuracy": (20,), "test_loss": (20,), "train_loss": (20,), "train_accuracy": (20,)}
    assert float(hist["test_accuracy"][-1]) > 0.95                    # the Clojure result
    assert fn.gradcheck.gradcheck(net, params2, train).passed


@pytest.mark.slow
def test_functions_compose_with_jit_vmap_and_grad():
    net = fn.model.mlp([2, 8, 2], hidden=M.sigmoid, output=M.sigmoid, loss=L.mse)
    ds = fn.data.gaussian_clusters(jax.random.key(0), n_per_class=20)
    params = fn.model.init(jax.random.key(1), net)
    jit_loss = jax.jit(fn.model.loss, static_argnums=0)
    assert float(jit_loss(net, params, ds)) == pytest.approx(float(fn.model.loss(net, params, ds)),
                                                             rel=1e-6)
    many = jax.vmap(lambda k: fn.model.init(k, net))(jax.random.split(jax.random.key(2), 3))
    outs = jax.vmap(lambda p: fn.model.forward(net, p, ds.x))(many)
    assert outs.shape == (3, 40, 2)
    jit_grads = jax.jit(fn.model.grads, static_argnums=0)(net, params, ds)
    for a, b in zip(jax.tree.leaves(jit_grads), jax.tree.leaves(fn.model.grads(net, params, ds))):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_the_description_is_hashable_and_prints_well():
    a = fn.model.mlp([2, 8, 2], hidden=M.sigmoid, output=M.sigmoid, loss=L.mse)
    b = fn.model.mlp((2, 8, 2), hidden=M.sigmoid, output=M.sigmoid, loss=L.mse)
    assert a == b and hash(a) == hash(b)                   # same network -> same jit cache entry
    assert repr(a) == "MLP(2 -> 8 -> 2, sigmoid, sigmoid, mse)"
    assert a.activations == (M.sigmoid, M.sigmoid)


@pytest.mark.parametrize("init, check", [
    (fn.model.uniform(0.5), lambda w, b: np.abs(w).max() <= 0.5 and np.abs(b).max() > 0),
    (fn.model.glorot(), lambda w, b: np.abs(w).max() <= np.sqrt(6 / 300) and not b.any()),
    (fn.model.he(), lambda w, b: abs(w.std() - np.sqrt(2 / 200)) < 0.01 and not b.any()),
    (fn.model.lecun(), lambda w, b: abs(w.std() - np.sqrt(1 / 200)) < 0.01 and not b.any()),
])
@pytest.mark.slow
def test_init_schemes(init, check):
    net = fn.model.mlp([200, 100], hidden=M.relu, output=M.identity, loss=L.mse, init=init)
    (p,) = fn.model.init(jax.random.key(0), net)
    assert check(np.asarray(p["w"]), np.asarray(p["b"]))
    again = fn.model.init(jax.random.key(0), net)
    np.testing.assert_array_equal(again[0]["w"], p["w"])   # same key, same params


@pytest.mark.parametrize("sizes", [[2], [], [2, 0, 2], [2, -1], [2, 8.5, 2], 5])
def test_bad_sizes(sizes):
    with pytest.raises(ValueError, match="sizes"):
        fn.model.mlp(sizes, hidden=M.sigmoid, output=M.sigmoid, loss=L.mse)


def test_params_that_do_not_fit_the_network_name_the_leaf():
    net = fn.model.mlp([2, 8, 2], hidden=M.sigmoid, output=M.sigmoid, loss=L.mse)
    other = fn.model.mlp([2, 5, 2], hidden=M.sigmoid, output=M.sigmoid, loss=L.mse)
    params = fn.model.init(jax.random.key(0), other)
    x = jnp.zeros((4, 2))
    with pytest.raises(ValueError, match=r"params\[0\]\['w'\] has shape \(2, 5\).*\(2, 8\)"):
        fn.model.forward(net, params, x)
    with pytest.raises(ValueError, match="tuple of 2 layers"):
        fn.model.forward(net, params[:1], x)
    with pytest.raises(ValueError, match="x has 3 features but the network expects 2"):
        fn.model.forward(net, fn.model.init(jax.random.key(1), net), jnp.zeros((4, 3)))
    with pytest.raises(ValueError, match="y is 3 wide"):
        fn.model.loss(net, fn.model.init(jax.random.key(2), net),
                      fn.data.Dataset(x, jnp.eye(3)[jnp.array([0, 1, 2, 0])]))


def test_no_autodiff_in_the_library_gradient_path():
    """jax.grad is the referee (gradcheck), never the engine: no autodiff anywhere else."""
    import io
    import pathlib
    import tokenize
    banned = {"grad", "value_and_grad", "vjp", "jvp", "custom_vjp", "custom_jvp", "linearize"}
    for path in pathlib.Path(fn.__file__).parent.rglob("*.py"):
        if path.name == "gradcheck.py":
            continue
        tokens = tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
        code = [t.string for t in tokens if t.type in (tokenize.NAME, tokenize.OP)]  # not docs
        used = {c for a, dot, c in zip(code, code[1:], code[2:]) if (a, dot) == ("jax", ".")}
        used |= set(code) & (banned - {"grad", "vjp", "jvp"})    # imported bare names
        assert not (banned & used), f"{path.name} uses {banned & used}"


def test_functions_refuse_bad_values_outside_fit_too():
    net = fn.model.mlp([2, 8, 2], hidden=M.sigmoid, output=M.sigmoid, loss=L.mse)
    params = fn.model.init(jax.random.key(0), net)
    ds = fn.data.gaussian_clusters(jax.random.key(1), n_per_class=4)
    with pytest.raises(ValueError, match="empty"):
        fn.gradcheck.gradcheck(net, params, fn.data.Dataset(ds.x[:0], ds.y[:0]))
    with pytest.raises(ValueError, match="NaN or Inf"):
        fn.model.loss(net, params, fn.data.Dataset(ds.x.at[0, 0].set(jnp.nan), ds.y))
    for lr in (float("nan"), 0.0, -1.0):
        with pytest.raises(ValueError, match="lr"):
            fn.model.grad_step(net, params, ds, lr)
    with pytest.raises(TypeError, match="lr"):
        fn.model.grad_step(net, params, ds, "a")
    with pytest.raises(TypeError, match="init must be a scheme"):
        fn.model.mlp([2, 2], hidden=M.relu, output=M.identity, loss=L.mse, init=jnp.zeros)
    with pytest.raises(ValueError, match="uniform"):
        fn.model.uniform(-1.0)
    sizes = fn.model.mlp(np.array([2, 8, 2]), hidden=M.relu, output=M.identity, loss=L.mse)
    assert sizes.sizes == (2, 8, 2) and type(sizes.sizes[0]) is int


def test_probabilities_read_the_output_as_its_activation_means_it():
    def net(output, loss=L.mse, k=2):
        return fn.model.mlp([2, k], hidden=M.relu, output=output, loss=loss)
    p = fn.model.probabilities
    logits = np.array([[0.0, np.log(3.0)], [2.0, 2.0], [-800.0, 800.0]])
    want = [[0.25, 0.75], [0.5, 0.5], [0.0, 1.0]]              # softmax, finite at 800
    np.testing.assert_allclose(p(net(M.identity, L.softmax_cross_entropy), logits), want,
                               rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(p(net(M.tanh), logits[:2]), want[:2], rtol=1e-12)
    np.testing.assert_allclose(p(net(M.log_softmax, L.nll), np.log([[0.9, 0.1]])), [[0.9, 0.1]],
                               rtol=1e-12)
    sigmoids = np.array([[0.2, 0.9], [0.0, 0.0]])              # k sigmoids: kept as they are
    assert p(net(M.sigmoid), sigmoids) is sigmoids
    assert p(net(M.softmax), sigmoids) is sigmoids
    one = net(M.sigmoid, L.binary_cross_entropy, k=1)          # one column: p(class 1), clipped
    np.testing.assert_array_equal(p(one, np.array([[1.5], [0.3], [-0.1]])), [[1.0], [0.3], [0.0]])
    # numpy in, numpy out (float64 kept); jax in, jax out, also under jit
    assert p(net(M.identity), logits).dtype == np.float64
    jitted = jax.jit(p, static_argnums=0)(net(M.identity), jnp.asarray(logits[:2], jnp.float32))
    assert isinstance(jitted, jax.Array)
    np.testing.assert_allclose(jitted, want[:2], rtol=1e-6)


# --- a big step in pieces (funcnn.pieces) ---------------------------------------------------

def _cnn(*extra):
    """A small CNN whose workspace is 8 * 8 * (9 * 2 + 4) = 1,408 floats a row."""
    lay = fn.layers
    return fn.model.network(
        lay.serial(lay.Reshape((8, 8, 2)), lay.Conv2D(4, 3), M.relu, lay.MaxPool2D(2), *extra,
                   lay.Flatten(), lay.Dense(5)),
        input_shape=(128,), loss=L.softmax_cross_entropy)


def _rows(n, dtype):
    x = jax.random.normal(jax.random.key(1), (n, 128), dtype)
    return fn.data.Dataset(x, fn.data.one_hot(jnp.arange(n) % 5, 5, dtype))


@pytest.mark.parametrize("pieces", [2, 3, 5, 13])
@pytest.mark.slow
def test_a_step_in_pieces_is_the_step_in_one_float64(pieces, x64):
    """Loss, gradient and output of 13 rows in pieces (the last one overlapping the one
    before, rows 10-12 of weight 0: with 13 pieces two pieces hold padding only) equal the
    one-piece step's to rounding."""
    net = _cnn()
    params = fn.model.init(jax.random.key(0), net, jnp.float64)
    batch, w = _rows(13, jnp.float64), jnp.ones(13).at[10:].set(0.0)
    whole = fn.model.backprop(net, params, batch, w, train=False, pieces=1)
    split = fn.model.backprop(net, params, batch, w, train=False, pieces=pieces)
    assert split[3] is None                                  # no caches: nothing to update
    np.testing.assert_allclose(split[0], whole[0], rtol=1e-13)
    np.testing.assert_allclose(split[2], whole[2], rtol=1e-13, atol=1e-15)
    for a, b in zip(jax.tree.leaves(split[1]), jax.tree.leaves(whole[1])):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-15)
    # and both are jax.grad's
    ref = jax.grad(lambda p: fn.model.loss(net, p, batch, w))(params)
    for a, b in zip(jax.tree.leaves(split[1]), jax.tree.leaves(ref)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-15)


def test_which_steps_run_in_pieces():
    per_row = 8 * 8 * (9 * 2 + 4)
    net, budget = _cnn(), fn.pieces.PIECE_FLOATS
    assert net.layer.workspace(net.input_shape) == per_row
    assert fn.pieces.step_pieces(net, budget // per_row) == 1          # fits: whole
    rows = budget // per_row
    assert fn.pieces.step_pieces(net, 10 * rows) == 10                 # pieces of <= rows rows
    assert fn.pieces.step_pieces(net, 10 * rows + 1) == 11
    wide = 2 * budget // fn.pieces.PIECE_ROWS                          # floats a row: pieces
    assert max(fn.pieces.PIECE_ROWS, budget // wide) == fn.pieces.PIECE_ROWS   # of PIECE_ROWS rows
    wide_net = fn.model.network(fn.layers.serial(fn.layers.Dense(7)), input_shape=(wide,),
                                loss=L.mse)
    assert fn.pieces.step_pieces(wide_net, 100) == -(-100 // fn.pieces.PIECE_ROWS)
    too_wide = fn.model.network(fn.layers.serial(fn.layers.Dense(7)),      # 32 rows: over
                                input_shape=(5 * budget // fn.pieces.PIECE_ROWS,), loss=L.mse)
    assert fn.pieces.step_pieces(too_wide, 1000) == 1                  # the cap: whole
    with_bn = _cnn(fn.layers.BatchNorm())                             # the batch's statistics
    assert not with_bn.layer.independent_rows and net.layer.independent_rows
    assert fn.pieces.step_pieces(with_bn, 100 * rows) == 1
    residual = fn.layers.serial(fn.layers.Residual(fn.layers.BatchNorm()))
    assert not residual.independent_rows
    assert _cnn(fn.layers.Dropout(0.5)).layer.independent_rows       # a mask per row's key
    mine = _cnn(_Doubled())                     # a layer of your own that says nothing: whole
    assert not mine.layer.independent_rows and fn.pieces.step_pieces(mine, 100 * rows) == 1


@dataclass(frozen=True)
class _Doubled(fn.layers.Layer):
    """A layer of one's own that does not say its rows are independent: y = 2 x."""
    def shape(self, input_shape):
        return input_shape
    def apply(self, p, x, train=False, key=None):
        return 2 * x, None
    def vjp(self, p, cache, g):
        return (), 2 * g


@pytest.mark.slow
def test_dropout_in_pieces_is_the_gradient_of_the_loss_with_that_key(x64):
    """Row i draws its mask from its own key, whatever piece it is in: the step in pieces is
    exactly jax.grad of loss(..., key=k, train=True), and the one-piece step's (float64). On
    today's main each piece drew its own mask from a split key: relative error ~0.5."""
    net, n = _cnn(fn.layers.Dropout(0.5)), 40
    params = fn.model.init(jax.random.key(0), net, jnp.float64)
    batch, w = _rows(n, jnp.float64), jnp.ones(n).at[-3:].set(0.0)
    step = lambda key, pieces: fn.model.backprop(net, params, batch, w, key, pieces=pieces)
    ref = jax.grad(lambda p: fn.model.loss(net, p, batch, w, train=True,
                                           key=jax.random.key(7)))(params)
    for pieces in (1, 3, 5):
        loss, g, out, _ = step(jax.random.key(7), pieces)
        np.testing.assert_allclose(loss, fn.model.loss(net, params, batch, w, train=True,
                                                       key=jax.random.key(7)), rtol=1e-13)
        for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(ref), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-14)
    other = step(jax.random.key(8), 3)                                # another key, other masks
    assert not np.allclose(other[0], step(jax.random.key(7), 3)[0])


@pytest.mark.slow
def test_gradcheck_passes_a_dropout_network_whose_step_runs_in_pieces():
    """The issue's network: a batch of 256 rows runs in 4 pieces; the referee agrees."""
    lay = fn.layers
    cnn = fn.model.network(lay.serial(lay.Reshape((28, 28, 1)), lay.Conv2D(8, (3, 3)), M.relu,
                                      lay.MaxPool2D((2, 2)), lay.Flatten(), lay.Dropout(0.5),
                                      lay.Dense(10)),
                           input_shape=(784,), loss=L.softmax_cross_entropy)
    assert fn.pieces.step_pieces(cnn, 256) == 4
    x = jax.random.uniform(jax.random.key(2), (256, 784))
    batch = fn.data.Dataset(x, fn.data.one_hot(jnp.arange(256) % 10, 10))
    report = fn.gradcheck.gradcheck(cnn, fn.model.init(jax.random.key(5), cnn), batch,
                                    key=jax.random.key(1))
    assert report.passed, report


@pytest.mark.slow
def test_fit_runs_a_big_step_in_pieces_and_learns_the_same(monkeypatch, x64):
    """fit with a budget that splits each batch of 24 into 3 pieces ends where fit with the
    whole batch ends (float64, 2 epochs); compiled afresh for each budget."""
    net = _cnn()
    params = fn.model.init(jax.random.key(0), net, jnp.float64)
    train = _rows(48, jnp.float64)
    monkeypatch.setattr(fn.pieces, "PIECE_ROWS", 8)
    def run(budget):
        monkeypatch.setattr(fn.pieces, "PIECE_FLOATS", budget)
        jax.clear_caches()
        return fn.train.fit(jax.random.key(2), net, params, train, None, epochs=2, lr=0.1,
                            batch_size=24, verbose=False)
    assert fn.pieces.step_pieces(net, 24) == 1
    whole = run(1 << 30)
    split = run(8 * 1408)
    assert fn.pieces.step_pieces(net, 24) == 3                         # (the budget fit read)
    for a, b in zip(jax.tree.leaves(split[0]), jax.tree.leaves(whole[0])):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(split[1]["train_loss"], whole[1]["train_loss"], rtol=1e-12)
    jax.clear_caches()
