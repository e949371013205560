"""Optimizers: every update against its textbook formula in NumPy (float64), each one driving
a loss down, one compile per set of hyperparameters, vmap over a batch of params, the checks."""
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import funcnn as fn
from funcnn import optim

M, L = fn.math, fn.losses
SHAPES = ({"w": (3, 4), "b": (4,)}, {"w": (4, 2), "b": (2,)})    # two layers, as funcnn's params


def _tree(rng):
    """Params-shaped float64 NumPy arrays; the leaves on different scales (1e-3 to 1), so
    that eps and the per-leaf normalisation of adam show in the numbers."""
    return tuple({k: 10.0 ** -(i + j) * rng.normal(size=s)
                  for j, (k, s) in enumerate(layer.items())} for i, layer in enumerate(SHAPES))


def _train_step(opt, params, state, g):
    """One step of any optimizer: the caller's view of init/update/apply_updates."""
    updates, state = opt.update(g, state, params)
    return optim.apply_updates(params, updates), state


_step = jax.jit(_train_step, static_argnums=0)    # the optimizer is a static argument


def _run(opt, params, grads):
    """The params after each of the steps `grads` (one gradient tree per step)."""
    params, state = jax.tree.map(jnp.asarray, params), opt.init(params)
    out = []
    for g in grads:
        params, state = _step(opt, params, state, jax.tree.map(jnp.asarray, g))
        out.append(params)
    return out


def _reference(kind, params, grads, lr, decay=0.0, mu=0.0, b1=0.0, b2=0.0, eps=0.0):
    """The textbook rules, leaf by leaf in NumPy. L2 as seed 2: g_w += decay * w, "b" as is."""
    p = {(i, k): np.array(v) for i, layer in enumerate(params) for k, v in layer.items()}
    m = {key: np.zeros_like(v) for key, v in p.items()}        # momentum's v, or adam's m
    s = {key: np.zeros_like(v) for key, v in p.items()}        # adam's v
    out = []
    for t, g_tree in enumerate(grads, start=1):
        for (i, k), w in p.items():
            g = g_tree[i][k] + (decay * w if k == "w" else 0.0)
            if kind == "sgd":
                p[i, k] = w - lr * g
            elif kind in ("momentum", "nesterov"):
                m[i, k] = mu * m[i, k] + g
                p[i, k] = w - lr * (g + mu * m[i, k] if kind == "nesterov" else m[i, k])
            elif kind == "adam":
                m[i, k] = b1 * m[i, k] + (1 - b1) * g
                s[i, k] = b2 * s[i, k] + (1 - b2) * g ** 2
                m_hat, v_hat = m[i, k] / (1 - b1 ** t), s[i, k] / (1 - b2 ** t)
                p[i, k] = w - lr * m_hat / (np.sqrt(v_hat) + eps)
        out.append(tuple({k: p[i, k].copy() for k in layer} for i, layer in enumerate(SHAPES)))
    return out


CASES = {   # name: (the optimizer, the same rule for the referee)
    "sgd": (optim.sgd(0.1), dict(kind="sgd", lr=0.1)),
    "momentum": (optim.momentum(0.05, mu=0.8), dict(kind="momentum", lr=0.05, mu=0.8)),
    "nesterov": (optim.momentum(0.05, mu=0.8, nesterov=True),
                 dict(kind="nesterov", lr=0.05, mu=0.8)),
    "adam": (optim.adam(0.03, b1=0.8, b2=0.95, eps=1e-4),
             dict(kind="adam", lr=0.03, b1=0.8, b2=0.95, eps=1e-4)),
    "adam-defaults": (optim.adam(1e-3), dict(kind="adam", lr=1e-3, b1=0.9, b2=0.999, eps=1e-8)),
    "sgd+l2 (seed 2)": (optim.weight_decay(optim.sgd(0.01), 0.001),
                        dict(kind="sgd", lr=0.01, decay=0.001)),
    "sgd+l2 large": (optim.weight_decay(optim.sgd(0.1), 0.5), dict(kind="sgd", lr=0.1, decay=0.5)),
    "nesterov+l2": (optim.weight_decay(optim.momentum(0.05, mu=0.8, nesterov=True), 0.3),
                    dict(kind="nesterov", lr=0.05, mu=0.8, decay=0.3)),
    "adam+l2": (optim.weight_decay(optim.adam(0.03, b1=0.8, b2=0.95, eps=1e-4), 0.3),
                dict(kind="adam", lr=0.03, b1=0.8, b2=0.95, eps=1e-4, decay=0.3)),
}


@pytest.mark.parametrize("name", CASES)
@pytest.mark.slow
def test_updates_match_the_textbook_formula_float64(name, x64):
    opt, rule = CASES[name]
    rng = np.random.default_rng(len(name))
    params, grads = _tree(rng), [_tree(rng) for _ in range(7)]
    got, want = _run(opt, params, grads), _reference(params=params, grads=grads, **rule)
    for t, (g, w) in enumerate(zip(got, want, strict=True), start=1):
        for (path, a), b in zip(jax.tree.leaves_with_path(g), jax.tree.leaves(w), strict=True):
            assert a.dtype == jnp.float64
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15,
                                       err_msg=f"{opt} step {t} {jax.tree_util.keystr(path)}")


def test_the_referee_tells_the_variants_apart(x64):
    """The comparisons above can fail: near variants give other numbers."""
    rng = np.random.default_rng(0)
    params, grads = _tree(rng), [_tree(rng) for _ in range(5)]
    nesterov = _run(optim.momentum(0.05, mu=0.8, nesterov=True), params, grads)[-1]
    heavy_ball = _reference("momentum", params, grads, lr=0.05, mu=0.8)[-1]
    assert not np.allclose(nesterov[0]["w"], heavy_ball[0]["w"], rtol=1e-6)
    decayed = _run(optim.weight_decay(optim.sgd(0.1), 0.5), params, grads)[-1]
    plain = _reference("sgd", params, grads, lr=0.1)[-1]
    np.testing.assert_allclose(decayed[1]["b"], plain[1]["b"], rtol=1e-12)   # b: no decay
    assert not np.allclose(decayed[1]["w"], plain[1]["w"], rtol=1e-3)        # w: decayed


def test_weight_decay_shrinks_w_and_leaves_b(x64):
    """Zero gradients: w <- (1 - lr decay) w each step, b stays put (seed 2's L2)."""
    params = _tree(np.random.default_rng(1))
    zero = jax.tree.map(np.zeros_like, params)
    after = _run(optim.weight_decay(optim.sgd(0.1), 0.5), params, [zero] * 3)[-1]
    for got, start in zip(after, params, strict=True):
        np.testing.assert_allclose(got["w"], 0.95 ** 3 * start["w"], rtol=1e-13)
        np.testing.assert_array_equal(got["b"], start["b"])


# --- behaviour: each optimizer drives a loss down --------------------------------------------

H = ({"w": np.linspace(0.2, 5.0, 12).reshape(3, 4), "b": np.full(4, 1.0)},
     {"w": np.linspace(5.0, 0.5, 8).reshape(4, 2), "b": np.array([0.3, 3.0])})   # curvatures
TARGET = jax.tree.map(lambda h: np.cos(7.0 * h), H)                              # the minimum


def _quadratic(p, data):
    """0.5 sum h (p - p*)^2 over every leaf (condition number 25), and its gradient h (p - p*)."""
    h, target = data
    d = jax.tree.map(jnp.subtract, p, target)
    value = sum(jax.tree.leaves(jax.tree.map(lambda h, d: 0.5 * (h * d * d).sum(), h, d)))
    return value, jax.tree.map(jnp.multiply, h, d)


@dataclass(frozen=True)
class _NetLoss:
    """(params, batch) -> (loss, grads) of one network, by fn.model.value_and_grads."""
    net: fn.model.MLP

    def __call__(self, params, batch):
        value, g, _ = fn.model.value_and_grads(self.net, params, batch)
        return value, g


@partial(jax.jit, static_argnums=(0, 1, 2))
def _minimise(opt, value_and_grads, steps, params, data):
    """`steps` optimizer steps inside one lax.scan; returns the params and the loss per step."""
    def step(carry, _):
        params, state = carry
        value, g = value_and_grads(params, data)
        return _train_step(opt, params, state, g), value
    (params, _), values = lax.scan(step, (params, opt.init(params)), length=steps)
    return params, values


@pytest.mark.parametrize("opt", [optim.sgd(0.3), optim.momentum(0.05),
                                 optim.momentum(0.05, nesterov=True), optim.adam(0.05)], ids=repr)
@pytest.mark.slow
def test_each_optimizer_minimises_a_quadratic(opt):
    start = jax.tree.map(np.zeros_like, TARGET)
    params, values = _minimise(opt, _quadratic, 400, start, (H, TARGET))
    final = float(_quadratic(params, (H, TARGET))[0])
    assert float(values[0]) > 1.0 and final < 1e-8, (opt, values[::50], final)
    for p, t in zip(jax.tree.leaves(params), jax.tree.leaves(TARGET), strict=True):
        np.testing.assert_allclose(p, t, atol=1e-4)


def test_weight_decay_reaches_the_l2_regularised_minimum():
    """With L2 on w, the minimum moves: w* = h p* / (h + decay); b* = p* unchanged."""
    decay = 0.5
    params, _ = _minimise(optim.weight_decay(optim.sgd(0.3), decay), _quadratic, 400,
                          jax.tree.map(np.zeros_like, TARGET), (H, TARGET))
    for got, h, target in zip(params, H, TARGET, strict=True):
        np.testing.assert_allclose(got["w"], h["w"] * target["w"] / (h["w"] + decay), atol=1e-5)
        np.testing.assert_allclose(got["b"], target["b"], atol=1e-5)


def _clojure_setup():
    k_data, k_init = jax.random.split(jax.random.key(1337))
    batch = fn.data.gaussian_clusters(k_data, n_per_class=200)
    net = fn.model.mlp([2, 8, 2], hidden=M.sigmoid, output=M.sigmoid, loss=L.mse,
                       init=fn.model.uniform(0.5))
    return net, fn.model.init(k_init, net), batch


@pytest.mark.parametrize("opt", [optim.sgd(2.0), optim.momentum(0.5), optim.adam(0.05),
                                 optim.weight_decay(optim.adam(0.05), 1e-4)], ids=repr)
@pytest.mark.slow
def test_each_optimizer_trains_the_clojure_net(opt):
    """Full batch, 300 steps in one jitted lax.scan, gradients by fn.model.value_and_grads."""
    net, params, batch = _clojure_setup()
    params, values = _minimise(opt, _NetLoss(net), 300, params, batch)
    accuracy = fn.metrics.accuracy(fn.model.forward(net, params, batch.x), batch.y)
    assert float(values[0]) > 0.2 and float(values[-1]) < 0.05, (opt, values[::50])
    assert float(accuracy) > 0.95, (opt, accuracy)


# --- one compile per set of hyperparameters ---------------------------------------------------

def _sgd_init(params):
    return ()


def _sgd_update(grads, state, params=None):
    return jax.tree.map(lambda g: -0.1 * g, grads), state


@pytest.mark.parametrize("build", [lambda: optim.sgd(0.1), lambda: optim.momentum(0.1, 0.8, True),
                                   lambda: optim.adam(1e-3),
                                   lambda: optim.weight_decay(optim.adam(1e-3), 1e-3),
                                   lambda: optim.Optimizer(_sgd_init, _sgd_update)],
                         ids=["sgd", "nesterov", "adam", "adam+l2", "Optimizer"])
def test_a_rebuilt_optimizer_does_not_recompile(build):
    step = jax.jit(partial(_train_step), static_argnums=0)            # a fresh cache
    params = tuple({k: jnp.ones(s) for k, s in layer.items()} for layer in SHAPES)
    first = build()
    params, state = step(first, params, first.init(params), params)
    second = build()                                                  # a new, equal object
    assert second == first and hash(second) == hash(first) and second is not first
    step(second, params, state, params)
    assert step._cache_size() == 1


def test_the_compile_count_bites():
    """Other hyperparameters, or closures (equal only to themselves), do compile again."""
    step = jax.jit(partial(_train_step), static_argnums=0)            # a fresh cache
    params = {"w": jnp.ones(3), "b": jnp.ones(3)}
    for lr in (1e-3, 1e-3, 2e-3):
        opt = optim.adam(lr)
        step(opt, params, opt.init(params), params)
    assert step._cache_size() == 2
    for _ in range(2):
        closure = optim.Optimizer(lambda p: (), lambda g, s, p=None: (g, s))
        step(closure, params, (), params)
    assert step._cache_size() == 4


# --- the state under vmap (an ensemble), and its dtype ----------------------------------------

@pytest.mark.parametrize("opt", [optim.sgd(0.1), optim.momentum(0.1, nesterov=True),
                                 optim.weight_decay(optim.adam(0.01), 1e-2)], ids=repr)
@pytest.mark.slow
def test_a_batch_of_params_under_vmap_matches_one_by_one(opt):
    net, _, batch = _clojure_setup()
    draws = [fn.model.init(k, net) for k in jax.random.split(jax.random.key(5), 4)]
    members = jax.tree.map(lambda *v: jnp.stack(v), *draws)          # 4 networks
    grads = jax.vmap(lambda p: fn.model.grads(net, p, batch))(members)
    states = jax.vmap(opt.init)(members)
    assert all(isinstance(leaf, jax.Array) and leaf.shape[:1] == (4,)
               for leaf in jax.tree.leaves(states))                   # arrays only, batched
    stepped = members
    for _ in range(3):
        stepped, states = jax.vmap(partial(_step, opt))(stepped, states, grads)
    for i in range(4):
        one = jax.tree.map(lambda v: v[i], members)
        alone = _run(opt, one, [jax.tree.map(lambda v: v[i], grads)] * 3)[-1]
        for a, b in zip(jax.tree.leaves(stepped), jax.tree.leaves(alone), strict=True):
            np.testing.assert_allclose(a[i], b, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("opt", [optim.momentum(0.1), optim.adam(0.01),
                                 optim.weight_decay(optim.sgd(0.1), 0.1)], ids=repr)
def test_float32_params_stay_float32(opt):
    params = ({"w": jnp.ones((2, 3), jnp.float32), "b": jnp.zeros(3, jnp.float32)},)
    params, state = _step(opt, params, opt.init(params), params)
    dtypes = {leaf.dtype for leaf in jax.tree.leaves((params, state))}
    assert dtypes <= {np.dtype("float32"), np.dtype("int32")}, dtypes


# --- hyperparameters: checked, named, readable ------------------------------------------------

@pytest.mark.parametrize("build, name", [
    (lambda: optim.sgd(0.0), "lr"), (lambda: optim.sgd(-0.1), "lr"),
    (lambda: optim.sgd(float("inf")), "lr"), (lambda: optim.adam(float("nan")), "lr"),
    (lambda: optim.momentum(0.1, mu=1.0), "mu"), (lambda: optim.momentum(0.1, mu=-0.5), "mu"),
    (lambda: optim.adam(0.1, b1=1.0), "b1"), (lambda: optim.adam(0.1, b2=1.5), "b2"),
    (lambda: optim.adam(0.1, b2=-0.1), "b2"), (lambda: optim.adam(0.1, eps=0.0), "eps"),
    (lambda: optim.weight_decay(optim.sgd(0.1), -1e-3), "decay"),
])
def test_bad_hyperparameters_raise_naming_the_argument(build, name):
    with pytest.raises(ValueError, match=rf"^{name} "):
        build()


@pytest.mark.parametrize("build, name", [
    (lambda: optim.sgd("0.1"), "lr"), (lambda: optim.momentum(0.1, nesterov="yes"), "nesterov"),
    (lambda: optim.weight_decay(0.1, optim.sgd(0.1)), "opt"),
])
def test_wrong_types_raise_naming_the_argument(build, name):
    with pytest.raises(TypeError, match=rf"^{name} "):
        build()


def test_weight_decay_needs_params_with_w_leaves():
    opt = optim.weight_decay(optim.sgd(0.1), 0.1)
    p = {"w": jnp.ones(3), "b": jnp.ones(3)}
    with pytest.raises(ValueError, match="needs the params"):
        opt.update(p, opt.init(p), None)
    with pytest.raises(ValueError, match='no "w" leaf'):
        opt.update(jnp.ones(3), (), jnp.ones(3))


def test_boundary_values_are_accepted():
    assert optim.momentum(0.1, mu=0.0).mu == 0.0 and optim.adam(0.1, b1=0.0, b2=0.0).b2 == 0.0
    assert optim.weight_decay(optim.sgd(1), 0).decay == 0.0
    assert optim.sgd(np.float32(0.5)) == optim.sgd(0.5)               # stored as a Python float


def test_a_concrete_0d_array_is_its_number_and_a_traced_one_is_refused():
    assert optim.sgd(jnp.asarray(0.5)) == optim.sgd(0.5)
    with pytest.raises(TypeError, match=r"^lr \(learning rate\) .*traced"):
        jax.jit(lambda lr: optim.sgd(lr).lr)(0.5)
    with pytest.raises(ValueError, match=r"^mu \(momentum\) must be finite and in \[0, 1\), "
                                         r"got 1.0; 0.9 is usual$"):
        optim.momentum(0.1, mu=1.0)


def test_repr_reads_like_the_call():
    assert repr(optim.adam(0.001)) == "adam(lr=0.001)"
    assert repr(optim.adam(0.01, b2=0.99)) == "adam(lr=0.01, b2=0.99)"
    assert repr(optim.momentum(0.1, nesterov=True)) == "momentum(lr=0.1, nesterov=True)"
    assert repr(optim.weight_decay(optim.sgd(0.01), 0.001)) == \
        "weight_decay(sgd(lr=0.01), decay=0.001)"
