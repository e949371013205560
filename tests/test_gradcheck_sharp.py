"""The referee is sharp: a hand gradient whose tree or leaf shape is not its params' fails
`check_layer` and `gradcheck`, named by its path, before any value is compared (compared by
position, or broadcast, the right numbers under a wrong key, in a tuple or in an f[1, d] for
an f[d] would pass)."""
import re
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import pytest

import funcnn as fn
from funcnn.checks import InputError

L = fn.layers


@dataclass(frozen=True)
class Scale(L.Layer):
    """y = x * s, one scale per feature: x: f[n, d], p = {"s": f[d]}. Its vjp is right; the
    subclasses below each get one thing wrong."""

    def shape(self, input_shape):
        return input_shape

    def init(self, key, input_shape, dtype):
        return {"s": 1.0 + jax.random.uniform(key, input_shape, dtype)}

    def apply(self, p, x, train=False, key=None):
        return x * p["s"][None, :], x

    def vjp(self, p, cache, g):
        x = cache
        # y = x s  =>  dL/ds = sum over rows of g x,  dL/dx = g s
        return self.ds(g * x), g * p["s"][None, :]

    def ds(self, gx):
        return {"s": gx.sum(axis=0)}


class WrongKey(Scale):
    def ds(self, gx):
        return {"scale": gx.sum(axis=0)}            # the right numbers under another key


class Tuple(Scale):
    def ds(self, gx):
        return (gx.sum(axis=0),)                    # a tuple for the dict


class Row(Scale):
    def ds(self, gx):
        return {"s": gx.sum(axis=0, keepdims=True)}  # f[1, d] for f[d]: broadcasts


class Doubled(Scale):
    def ds(self, gx):
        return {"s": 2 * gx.sum(axis=0)}            # the right tree, a wrong value


def test_a_right_vjp_passes():
    report = fn.gradcheck.check_layer(Scale(), (4,))
    assert report.passed and report.worst < 1e-12 and report.problems == (), report
    assert set(report.errors) == {"['s']", "dx"}
    assert "PASS" in repr(report) and "FAIL" not in repr(report)


@pytest.mark.parametrize("layer, name, what", [
    (WrongKey(), "params", r"expected {'s': float64\[4\]}, got {'scale': float64\[4\]}"),
    (Tuple(), "params", r"expected {'s': float64\[4\]}, got \(float64\[4\],\)"),
    (Row(), r"params\['s'\]", r"expected shape \(4,\), got \(1, 4\)"),
], ids=["wrong key", "tuple for dict", "f[1, d] for f[d]"])
def test_a_misshapen_gradient_fails_named_by_its_path(layer, name, what):
    report = fn.gradcheck.check_layer(layer, (4,))
    assert not report.passed and not report and report.worst == float("inf"), report
    assert report.errors["['s']"] == float("inf") and report.errors["dx"] < 1e-12, report
    text = repr(report)
    assert text.startswith("gradcheck (float64, rtol 1e-09): FAIL, worst inf"), text
    assert len(report.problems) == 1, report.problems
    assert re.search(rf"^  FAIL {name}: {what}$", text, re.MULTILINE), text


def test_a_wrong_value_fails_as_before():
    report = fn.gradcheck.check_layer(Doubled(), (4,))
    assert not report.passed and report.problems == (), report
    assert report.errors["['s']"] > 0.1 and report.errors["dx"] < 1e-12, report
    assert "params['s']" in repr(report) and "FAIL" in repr(report)


def test_a_vjp_that_returns_no_pair_fails():
    class Three(Scale):
        def vjp(self, p, cache, g):
            dp, dx = super().vjp(p, cache, g)
            return dp, dx, dx
    report = fn.gradcheck.check_layer(Three(), (4,))
    assert not report.passed and report.worst == float("inf"), report
    assert "FAIL dp, dx: expected {'dp': {'s': float64[4]}, 'dx': float64[3, 4]}, got (" \
        in repr(report), report


@pytest.mark.parametrize("layer, name, leaf", [(WrongKey(), r"params\[0\]", ""),
                                               (Tuple(), r"params\[0\]", ""),
                                               (Row(), r"params\[0\]\['s'\]", "['s']")],
                         ids=["wrong key", "tuple for dict", "f[1, d] for f[d]"])
@pytest.mark.slow
def test_gradcheck_fails_a_network_with_a_misshapen_layer(layer, name, leaf, x64):
    """A failed report naming the leaf, or an InputError from the backprop itself (serial may
    refuse such a gradient) naming the layer and the leaf: never a raw JAX error, never a pass."""
    net = fn.model.network(L.serial(layer, L.Dense(3)), input_shape=(4,),
                           loss=fn.losses.softmax_cross_entropy)
    params = fn.model.init(jax.random.key(0), net, jnp.float64)
    k_x, k_y = jax.random.split(jax.random.key(1))
    batch = fn.data.Dataset(jax.random.normal(k_x, (5, 4), jnp.float64),
                            fn.data.one_hot(jax.random.randint(k_y, (5,), 0, 3), 3, jnp.float64))
    try:
        report = fn.gradcheck.gradcheck(net, params, batch)
    except InputError as e:
        assert f"layer 0 ({layer!r})" in str(e) and f"dL/dp{leaf}" in str(e), e
        return
    assert not report.passed and report.worst == float("inf"), report
    assert report.errors["[1]['w']"] < 1e-9 and report.errors["[1]['b']"] < 1e-9, report
    assert re.search(rf"^  FAIL {name}: expected", repr(report), re.MULTILINE), report


def test_compare_names_each_misshapen_place_of_a_network_tree(x64):
    """gradcheck's own comparison, on a network's params (a tuple of layers' dicts): every
    place where the trees differ, by path, and the rest still compared by value."""
    a = jnp.arange(1.0, 5.0)
    auto = ({"s": a}, {"b": a[:3], "w": jnp.ones((4, 3))}, (), {"gamma": a, "beta": a})
    hand = ({"scale": a}, {"b": a[:3], "w": jnp.ones((4, 3))}, [],
            {"gamma": a[None, :], "beta": 1.5 * a})
    errors, problems = fn.gradcheck.compare(hand, auto)
    assert dict(problems) == {
        "[0]": "expected {'s': float64[4]}, got {'scale': float64[4]}",
        "[2]": "expected (), got []",
        "[3]['gamma']": "expected shape (4,), got (1, 4)"}
    assert errors == {"[0]['s']": float("inf"), "[1]['b']": 0.0, "[1]['w']": 0.0,
                      "[3]['beta']": pytest.approx(0.5), "[3]['gamma']": float("inf")}
    report = fn.gradcheck.GradcheckReport(errors, 1e-9, "float64", problems)
    assert not report.passed and report.worst == float("inf")
    assert "  FAIL params[3]['gamma']: expected shape (4,), got (1, 4)" in repr(report)
    assert fn.gradcheck.GradcheckReport({"dx": 0.0}, 1e-9, "float64").passed   # no problems
