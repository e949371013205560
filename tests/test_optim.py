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

M, L, S = fn.math, fn.losses, fn.schedules
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


def _assert_steps_equal(opt, got, want):
    """Every step's params (float64) equal the formula's to rtol 1e-12, leaf by leaf."""
    for t, (g, w) in enumerate(zip(got, want, strict=True), start=1):
        for (path, a), b in zip(jax.tree.leaves_with_path(g), jax.tree.leaves(w), strict=True):
            assert a.dtype == jnp.float64
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15,
                                       err_msg=f"{opt} step {t} {jax.tree_util.keystr(path)}")


@pytest.mark.parametrize("name", CASES)
@pytest.mark.slow
def test_updates_match_the_textbook_formula_float64(name, x64):
    opt, rule = CASES[name]
    rng = np.random.default_rng(len(name))
    params, grads = _tree(rng), [_tree(rng) for _ in range(7)]
    got, want = _run(opt, params, grads), _reference(params=params, grads=grads, **rule)
    _assert_steps_equal(opt, got, want)


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
                                   lambda: optim.Optimizer(_sgd_init, _sgd_update),
                                   lambda: optim.adamw(1e-3, mask=({"w": True, "b": False},) * 2),
                                   lambda: optim.rmsprop(S.exponential_decay(0.1, 10, 0.5)),
                                   lambda: optim.chain(optim.clip_by_global_norm(1.0),
                                                       optim.adamw(S.warmup_cosine_decay(
                                                           0.0, 1e-3, 10, 100), weight_decay=0.1,
                                                           mask=optim.decay_weights_only))],
                         ids=["sgd", "nesterov", "adam", "adam+l2", "Optimizer", "adamw+mask",
                              "rmsprop(schedule)", "clip+adamw(schedule)"])
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
                                 optim.weight_decay(optim.sgd(0.1), 0.1),
                                 optim.sgd(S.constant(0.1)), optim.rmsprop(0.01),
                                 optim.chain(optim.clip_by_global_norm(0.5), optim.adamw(
                                     S.warmup_cosine_decay(0.0, 1e-3, 10, 100)))], ids=repr)
def test_float32_params_stay_float32(opt):
    params = ({"w": jnp.ones((2, 3), jnp.float32), "b": jnp.zeros(3, jnp.float32)},)
    params, state = _step(opt, params, opt.init(params), params)
    dtypes = {leaf.dtype for leaf in jax.tree.leaves((params, state))}
    assert dtypes <= {np.dtype("float32"), np.dtype("int32")}, dtypes


def _vector_schedule(count):
    return jnp.full(3, 0.1)                     # three numbers: not one learning rate


def _python_if_schedule(count):
    return 0.1 if count < 10 else 0.01          # `if` on a traced count


# --- hyperparameters: checked, named, readable ------------------------------------------------

@pytest.mark.parametrize("build, name", [
    (lambda: optim.sgd(0.0), "lr"), (lambda: optim.sgd(-0.1), "lr"),
    (lambda: optim.sgd(float("inf")), "lr"), (lambda: optim.adam(float("nan")), "lr"),
    (lambda: optim.momentum(0.1, mu=1.0), "mu"), (lambda: optim.momentum(0.1, mu=-0.5), "mu"),
    (lambda: optim.adam(0.1, b1=1.0), "b1"), (lambda: optim.adam(0.1, b2=1.5), "b2"),
    (lambda: optim.adam(0.1, b2=-0.1), "b2"), (lambda: optim.adam(0.1, eps=0.0), "eps"),
    (lambda: optim.weight_decay(optim.sgd(0.1), -1e-3), "decay"),
    (lambda: optim.adamw(0.1, weight_decay=-1e-4), "weight_decay"),
    (lambda: optim.adamw(0.1, b2=1.0), "b2"), (lambda: optim.adamw(-0.1), "lr"),
    (lambda: optim.rmsprop(0.1, decay=1.0), "decay"), (lambda: optim.rmsprop(0.1, eps=-1), "eps"),
    (lambda: optim.clip_by_global_norm(-1.0), "max_norm"),
    (lambda: optim.clip_by_global_norm(0.0), "max_norm"),
    (lambda: optim.adam(_vector_schedule), "lr"),
])
def test_bad_hyperparameters_raise_naming_the_argument(build, name):
    with pytest.raises(ValueError, match=rf"^{name} "):
        build()


@pytest.mark.parametrize("build, name", [
    (lambda: optim.sgd("0.1"), "lr"), (lambda: optim.momentum(0.1, nesterov="yes"), "nesterov"),
    (lambda: optim.weight_decay(0.1, optim.sgd(0.1)), "opt"),
    (lambda: optim.adam([0.1]), "lr"), (lambda: optim.sgd(S.warmup_cosine_decay), "lr"),
    (lambda: optim.rmsprop(0.1, eps_in_sqrt=1), "eps_in_sqrt"),
    (lambda: optim.momentum(_python_if_schedule), "lr"),
    (lambda: optim.adamw(0.1, mask=[1, 0]), "mask"),
    (lambda: optim.weight_decay(optim.clip_by_global_norm(1.0), 0.1), "opt"),
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


# --- AdamW, RMSprop, clipping, chains and schedules against their published formulas ---------
# The referee below is written from the formulas as optax and PyTorch document them, in NumPy
# float64, leaf by leaf, with the learning rate of step t (0-based: the steps taken before it)
# given as a NumPy function of t, independent of funcnn.schedules.

STEPS = 200


def _formula(kind, params, grads, lr, *, mu=0.0, b1=0.0, b2=0.0, eps=0.0, wd=0.0, decays=None,
             decay=0.0, eps_in_sqrt=True, max_norm=None, l2=0.0):
    """The params after each step. kind: sgd, momentum, nesterov, adam, adamw, rmsprop;
    lr: t -> the learning rate of step t; decays: {(layer, key): bool} for adamw's mask (None:
    every leaf); max_norm: clip the whole gradient to this global norm first (optax's rule);
    l2: seed 2's L2 first, g_w += l2 w."""
    p = {(i, k): np.array(v) for i, layer in enumerate(params) for k, v in layer.items()}
    m = {key: np.zeros_like(v) for key, v in p.items()}        # momentum's v, adam's m
    s = {key: np.zeros_like(v) for key, v in p.items()}        # adam's v, rmsprop's nu
    out = []
    for t, g_tree in enumerate(grads):
        g = {(i, k): g_tree[i][k] + (l2 * p[i, k] if k == "w" else 0.0) for (i, k) in p}
        if max_norm is not None:
            norm = np.sqrt(sum(np.sum(v ** 2) for v in g.values()))
            if norm >= max_norm:                               # g * max_norm / ||g||
                g = {key: v / norm * max_norm for key, v in g.items()}
        a = lr(t)
        for key, w in p.items():
            if kind == "sgd":
                p[key] = w - a * g[key]
            elif kind in ("momentum", "nesterov"):
                m[key] = mu * m[key] + g[key]
                p[key] = w - a * (g[key] + mu * m[key] if kind == "nesterov" else m[key])
            elif kind in ("adam", "adamw"):
                m[key] = b1 * m[key] + (1 - b1) * g[key]
                s[key] = b2 * s[key] + (1 - b2) * g[key] ** 2
                m_hat, v_hat = m[key] / (1 - b1 ** (t + 1)), s[key] / (1 - b2 ** (t + 1))
                d = m_hat / (np.sqrt(v_hat) + eps)
                if kind == "adamw" and (decays is None or decays[key]):
                    d = d + wd * w                             # decoupled: p itself
                p[key] = w - a * d
            elif kind == "rmsprop":
                s[key] = decay * s[key] + (1 - decay) * g[key] ** 2
                root = np.sqrt(s[key] + eps) if eps_in_sqrt else np.sqrt(s[key]) + eps
                p[key] = w - a * g[key] / root
        out.append(tuple({k: p[i, k].copy() for k in layer} for i, layer in enumerate(SHAPES)))
    return out


def _scan(opt, params, grads):
    """The params after each step, the steps in one lax.scan (one compile per optimizer)."""
    def step(carry, g):
        params, state = _train_step(opt, *carry, g)
        return (params, state), params
    stacked = jax.tree.map(lambda *v: jnp.stack(v), *grads)
    params = jax.tree.map(jnp.asarray, params)
    _, history = jax.jit(lambda p, gs: lax.scan(step, (p, opt.init(p)), gs))(params, stacked)
    return [jax.tree.map(lambda v: v[t], history) for t in range(len(grads))]


def _warmup_cosine_np(init, peak, warmup, total, end):
    """optax's warmup_cosine_decay_schedule as its documentation states it (decay_steps counts
    the warmup): linear to peak over `warmup` steps, a half cosine to `end` at `total`."""
    def lr(t):
        if t < warmup:
            return init + (peak - init) * t / warmup
        s = min(t, total) - warmup
        return end + (peak - end) * 0.5 * (1 + np.cos(np.pi * s / (total - warmup)))
    return lr


def _exponential_np(init, steps, rate, staircase=False):
    return lambda t: init * rate ** (t // steps if staircase else t / steps)


def lr_halving_at_50(step):
    """A user's schedule: a module-level function of the (traced) step count."""
    return jnp.where(step < 50, 0.02, 0.01)


NOT_B = {(0, "w"): True, (0, "b"): False, (1, "w"): True, (1, "b"): False}
WARM = dict(init=0.0, peak=0.03, warmup_steps=20, decay_steps=150, end=0.003)
WARM_NP = _warmup_cosine_np(0.0, 0.03, 20, 150, 0.003)
const = lambda v: (lambda t: v)                                         # noqa: E731

FORMULAS = {   # name: (the optimizer, the same rule for the referee)
    "adamw": (optim.adamw(0.03, b1=0.8, b2=0.95, eps=1e-4, weight_decay=0.5),
              dict(kind="adamw", lr=const(0.03), b1=0.8, b2=0.95, eps=1e-4, wd=0.5)),
    "adamw-defaults": (optim.adamw(1e-3),
                       dict(kind="adamw", lr=const(1e-3), b1=0.9, b2=0.999, eps=1e-8, wd=1e-4)),
    "adamw mask=pytree": (
        optim.adamw(0.03, weight_decay=0.5, mask=tuple({"w": True, "b": False} for _ in SHAPES)),
        dict(kind="adamw", lr=const(0.03), b1=0.9, b2=0.999, eps=1e-8, wd=0.5, decays=NOT_B)),
    "adamw mask=decay_weights_only": (
        optim.adamw(0.03, weight_decay=0.5, mask=optim.decay_weights_only),
        dict(kind="adamw", lr=const(0.03), b1=0.9, b2=0.999, eps=1e-8, wd=0.5, decays=NOT_B)),
    "rmsprop (optax)": (optim.rmsprop(0.01, decay=0.8, eps=1e-4),
                        dict(kind="rmsprop", lr=const(0.01), decay=0.8, eps=1e-4)),
    "rmsprop (PyTorch)": (optim.rmsprop(0.01, decay=0.99, eps=1e-4, eps_in_sqrt=False),
                          dict(kind="rmsprop", lr=const(0.01), decay=0.99, eps=1e-4,
                               eps_in_sqrt=False)),
    "clip+adamw": (optim.chain(optim.clip_by_global_norm(3.4), optim.adamw(0.03, weight_decay=0.5)),
                   dict(kind="adamw", lr=const(0.03), b1=0.9, b2=0.999, eps=1e-8, wd=0.5,
                        max_norm=3.4)),
    "clip+sgd": (optim.chain(optim.clip_by_global_norm(3.4), optim.sgd(0.1)),
                 dict(kind="sgd", lr=const(0.1), max_norm=3.4)),
    # every optimizer with a schedule as its learning rate
    "sgd(warmup_cosine)": (optim.sgd(S.warmup_cosine_decay(**WARM)),
                           dict(kind="sgd", lr=WARM_NP)),
    "momentum(exponential)": (optim.momentum(S.exponential_decay(0.05, 30, 0.5), mu=0.8),
                              dict(kind="momentum", lr=_exponential_np(0.05, 30, 0.5), mu=0.8)),
    "nesterov(staircase)": (
        optim.momentum(S.exponential_decay(0.05, 30, 0.5, staircase=True), 0.8, True),
        dict(kind="nesterov", lr=_exponential_np(0.05, 30, 0.5, staircase=True), mu=0.8)),
    "adam(warmup_cosine)": (optim.adam(S.warmup_cosine_decay(**WARM), b1=0.8, b2=0.95),
                            dict(kind="adam", lr=WARM_NP, b1=0.8, b2=0.95, eps=1e-8)),
    "adamw(warmup_cosine)": (optim.adamw(S.warmup_cosine_decay(**WARM), weight_decay=0.5,
                                         mask=optim.decay_weights_only),
                             dict(kind="adamw", lr=WARM_NP, b1=0.9, b2=0.999, eps=1e-8, wd=0.5,
                                  decays=NOT_B)),
    "rmsprop(user function)": (optim.rmsprop(lr_halving_at_50, decay=0.8),
                               dict(kind="rmsprop", lr=lambda t: 0.02 if t < 50 else 0.01,
                                    decay=0.8, eps=1e-8)),
    "sgd(constant)+l2": (optim.weight_decay(optim.sgd(S.constant(0.1)), 0.5),
                         dict(kind="sgd", lr=const(0.1), l2=0.5)),
    "clip+adamw(warmup_cosine)": (
        optim.chain(optim.clip_by_global_norm(3.4),
                    optim.adamw(S.warmup_cosine_decay(**WARM), weight_decay=0.1)),
        dict(kind="adamw", lr=WARM_NP, b1=0.9, b2=0.999, eps=1e-8, wd=0.1, max_norm=3.4)),
}


@pytest.mark.parametrize("name", FORMULAS)
@pytest.mark.slow
def test_each_rule_follows_its_formula_over_200_steps_float64(name, x64):
    opt, rule = FORMULAS[name]
    rng = np.random.default_rng(sum(map(ord, name)))
    params, grads = _tree(rng), [_tree(rng) for _ in range(STEPS)]
    got, want = _scan(opt, params, grads), _formula(params=params, grads=grads, **rule)
    _assert_steps_equal(opt, got, want)


@pytest.mark.slow
def test_the_referee_of_the_new_rules_tells_the_variants_apart(x64):
    """Each comparison above can fail: a near variant of each rule gives other numbers."""
    rng = np.random.default_rng(3)
    params, grads = _tree(rng), [_tree(rng) for _ in range(60)]
    norms = [np.sqrt(sum(np.sum(v ** 2) for v in jax.tree.leaves(g))) for g in grads]
    assert 10 < sum(n >= 3.4 for n in norms) < 50           # the clip both bites and does not
    last = lambda opt: _scan(opt, params, grads)[-1]        # noqa: E731
    rule = lambda **kw: _formula(params=params, grads=grads, **kw)[-1]   # noqa: E731
    adamw = dict(kind="adamw", lr=const(0.03), b1=0.9, b2=0.999, eps=1e-8, wd=0.5)
    masked = last(optim.adamw(0.03, weight_decay=0.5, mask=optim.decay_weights_only))
    np.testing.assert_allclose(masked[0]["w"], rule(**adamw)[0]["w"], rtol=1e-12)
    assert not np.allclose(masked[0]["b"], rule(**adamw)[0]["b"], rtol=1e-3)     # b: no decay
    assert not np.allclose(masked[0]["w"], rule(**{**adamw, "kind": "adam"})[0]["w"], rtol=1e-3)
    clipped = last(optim.chain(optim.clip_by_global_norm(3.4), optim.sgd(0.1)))
    assert not np.allclose(clipped[0]["w"], rule(kind="sgd", lr=const(0.1))[0]["w"], rtol=1e-3)
    torch_like = last(optim.rmsprop(0.01, decay=0.8, eps=1e-4, eps_in_sqrt=False))
    inside = rule(kind="rmsprop", lr=const(0.01), decay=0.8, eps=1e-4)
    assert not np.allclose(torch_like[1]["b"], inside[1]["b"], rtol=1e-6)
    scheduled = last(optim.sgd(S.warmup_cosine_decay(**WARM)))
    one_late = rule(kind="sgd", lr=lambda t: WARM_NP(t + 1))   # schedule(count + 1): off by one
    assert not np.allclose(scheduled[0]["w"], one_late[0]["w"], rtol=1e-9)


def test_clip_alone_below_and_above_the_norm(x64):
    """||g|| < max_norm: g as it is, bitwise; above: g max_norm / ||g||, of norm max_norm."""
    clip = optim.clip_by_global_norm(2.0)
    g = _tree(np.random.default_rng(4))
    norm = np.sqrt(sum(np.sum(v ** 2) for v in jax.tree.leaves(g)))
    small = jax.tree.map(lambda v: jnp.asarray(v * 1.9 / norm), g)            # ||g|| = 1.9
    out, state = clip.update(small, clip.init(small))
    assert state == ()
    for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(small), strict=True):
        np.testing.assert_array_equal(a, b)
    big = jax.tree.map(lambda v: jnp.asarray(v * 7.0 / norm), g)              # ||g|| = 7
    out, _ = jax.jit(clip.update)(big, ())
    for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(big), strict=True):
        np.testing.assert_allclose(a, np.asarray(b) * 2.0 / 7.0, rtol=1e-12)
    assert abs(np.sqrt(sum(np.sum(np.square(v)) for v in jax.tree.leaves(out))) - 2.0) < 1e-12


def _schedule_of_the_step(count):
    return 0.1 * (count + 1)                    # a user's schedule: 0.1 at count 0, 0.2 at 1


def test_state_keeps_its_old_layout_for_a_number_and_counts_for_a_schedule():
    p = {"w": jnp.ones((2, 3)), "b": jnp.ones(3)}
    assert optim.sgd(0.1).init(p) == ()
    assert optim.momentum(0.1).init(p).count is None and optim.rmsprop(0.1).init(p).count is None
    assert jax.tree.structure(optim.momentum(0.1).init(p)) == jax.tree.structure(
        optim.MomentumState(jax.tree.map(jnp.zeros_like, p)))      # the old state's layout
    for opt in (optim.sgd(_schedule_of_the_step), optim.momentum(_schedule_of_the_step),
                optim.rmsprop(_schedule_of_the_step), optim.adam(_schedule_of_the_step),
                optim.adamw(_schedule_of_the_step)):
        state = opt.init(p)
        count = lambda s: s.t if isinstance(s, optim.AdamState) else s.count   # noqa: E731
        assert count(state).dtype == jnp.int32 and int(count(state)) == 0
        step = jax.jit(opt.update)
        u1, state = step(p, state, p)
        u2, state = step(p, state, p)
        assert int(count(state)) == 2, opt
        if isinstance(opt, optim.sgd):          # the first step uses schedule(0), then (1)
            np.testing.assert_allclose(u1["b"], -0.1 * np.ones(3), rtol=1e-6)
            np.testing.assert_allclose(u2["b"], -0.2 * np.ones(3), rtol=1e-6)


def test_chain_state_is_the_tuple_of_its_members_and_clip_needs_an_optimizer_after_it():
    p = {"w": jnp.ones((2, 3)), "b": jnp.ones(3)}
    opt = optim.chain(optim.clip_by_global_norm(1.0), optim.adam(1e-3))
    state = opt.init(p)
    assert isinstance(state, tuple) and state[0] == () and isinstance(state[1], optim.AdamState)
    assert optim.check_optimizer(opt) is opt
    inner = optim.chain(optim.clip_by_global_norm(1.0), optim.clip_by_global_norm(2.0))
    assert optim.check_optimizer(optim.chain(inner, optim.sgd(0.1)))     # a chain in a chain
    for lone in (optim.clip_by_global_norm(1.0), inner):
        with pytest.raises(TypeError, match=r"^optimizer is a gradient transformation .*"
                                            r"no minus sign"):
            optim.check_optimizer(lone)
    with pytest.raises(ValueError, match=r"^transformations\[0\] \(adam\(lr=0.001\)\) is an "
                                         r"optimizer: .* must come last"):
        optim.chain(optim.adam(1e-3), optim.clip_by_global_norm(1.0))
    with pytest.raises(ValueError, match=r"^transformations: chain needs at least one"):
        optim.chain()
    with pytest.raises(TypeError, match=r"^transformations\[1\] must be an optimizer .*class"):
        optim.chain(optim.clip_by_global_norm(1.0), optim.adamw)


def test_a_mask_that_does_not_fit_is_refused_naming_mask():
    p = ({"w": jnp.ones((2, 3)), "b": jnp.ones(3)},)
    short = optim.adamw(1e-3, mask={"w": True, "b": False})            # not in a tuple
    with pytest.raises(ValueError, match=r"^mask does not fit the params: .*decay_weights_only"):
        short.init(p)
    with pytest.raises(TypeError, match=r"^mask must be a pytree of True/False"):
        optim.adamw(1e-3, mask=({"w": 1.0, "b": 0.0},))
    traced = optim.adamw(1e-3, mask=_traced_mask)
    with pytest.raises(ValueError, match=r"^mask does not fit"):
        jax.jit(traced.init)(p)
    with pytest.raises(ValueError, match=r"^adamw needs the params"):
        optim.adamw(1e-3).update(p, optim.adamw(1e-3).init(p))


def _traced_mask(params):
    return jax.tree.map(lambda v: v.sum() > 0, params)      # arrays, not True/False


def test_the_new_reprs_read_like_the_calls():
    assert repr(optim.adamw(3e-4, weight_decay=0.1, mask=optim.decay_weights_only)) == \
        "adamw(lr=0.0003, weight_decay=0.1, mask=decay_weights_only)"
    assert repr(optim.adamw(1e-3, mask=({"w": True, "b": False},))) == \
        "adamw(lr=0.001, mask=({'b': False, 'w': True},))"
    assert repr(optim.rmsprop(0.01, eps_in_sqrt=False)) == "rmsprop(lr=0.01, eps_in_sqrt=False)"
    assert repr(optim.chain(optim.clip_by_global_norm(1.0), optim.adamw(3e-4))) == \
        "chain(clip_by_global_norm(max_norm=1.0), adamw(lr=0.0003))"
    assert repr(optim.sgd(_schedule_of_the_step)) == "sgd(lr=_schedule_of_the_step)"
    assert repr(optim.adam(S.warmup_cosine_decay(0.0, 1e-3, 10, 100))) == \
        "adam(lr=warmup_cosine_decay(init=0.0, peak=0.001, warmup_steps=10, decay_steps=100))"
