"""Gradient check: the hand-written backprop, refereed by `jax.grad`.

Contract: `gradcheck(net, params, batch)` computes `funcnn.model.grads` and `jax.grad` of
`funcnn.model.loss` (the public functions a user calls; in float64 by default, so the
comparison is about the formulas, not rounding) and returns a `GradcheckReport`: the worst
relative error of each leaf, `max |hand - auto| / scale`, and whether all are below `rtol`.
`check_layer(layer, input_shape)` does the same for one layer alone: its `vjp` against
`jax.vjp` of its `apply`, for the params and the input. Both print as a small table in a REPL.
Run them after writing a new activation, loss or layer.

An integer input (tokens, into an `Embedding`) is not differentiated: its cotangent is what
`jax.vjp` gives for it, float0 zeros of its shape (`jax.dtypes.float0`), and a layer's `vjp`
returns that as its dL/dx. check_layer checks it is one of x's shape and compares no values
there; its report says so in a note.

Trees first, then numbers: a hand gradient must be shaped like its parameters, the same tree
(dict keys, tuple lengths) and each leaf the same shape and kind of number, before any leaf is
compared by value. A `{"scale": ..}` for params `{"s": ..}`, a tuple for a dict or an f64[1, d]
for an f64[d] fails, named by its path, with what was expected and what came (values compared
by position, or broadcast against each other, would pass it).

The scale of a leaf is the largest |auto| in it, but at least 1e-3 of the largest in the whole
tree: a leaf whose true gradient is zero (a bias just before a BatchNorm, which the
normalisation cancels) is rounding noise on both sides, judged against the network's scale.
"""
from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from funcnn import layers as L
from funcnn import labels, model, rng
from funcnn.data import Dataset

FLOOR = 1e-3   # a leaf's scale is at least this fraction of the tree's largest gradient


class GradcheckReport(NamedTuple):
    errors: dict[str, float]   # leaf path, e.g. "[0]['w']" -> worst relative error (inf: misshapen)
    rtol: float                # a leaf passes when its error is below this
    dtype: str                 # the precision the check ran in
    problems: tuple = ()       # (path, what): where the hand gradient is not shaped like params
    notes: tuple = ()          # lines printed under the table: what was not compared, and why

    @property
    def passed(self) -> bool:
        return not self.problems and all(e < self.rtol for e in self.errors.values())

    @property
    def worst(self) -> float:
        return float("inf") if self.problems else max(self.errors.values(), default=0.0)

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        lines = [f"gradcheck ({self.dtype}, rtol {self.rtol:.0e}): "
                 f"{'PASS' if self.passed else 'FAIL'}, worst {self.worst:.2e}"]
        width = max((len(p) for p in self.errors), default=0)
        for path, e in self.errors.items():
            lines.append(f"  {_name(path):<{width + 6}} {e:>8.2e}  "
                         f"{'ok' if e < self.rtol else 'FAIL'}")
        lines += [f"  FAIL {_name(path)}: {what}" for path, what in self.problems]
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


def _name(path: str) -> str:
    """A leaf's path as the report prints it: "[1]['s']" -> "params[1]['s']"; "dx" as is."""
    return path if path.startswith("d") else f"params{path}"


def relative_error(hand, auto, floor: float = 0.0) -> float:
    """max |hand - auto| / max(max |auto|, floor): 0 when equal, ~eps of the dtype when only
    rounding differs."""
    hand, auto = np.asarray(hand), np.asarray(auto)
    scale = max(float(np.abs(auto).max(initial=0.0)), floor, float(np.finfo(auto.dtype).tiny))
    return float(np.abs(hand - auto).max(initial=0.0)) / scale


def compare(hand, auto) -> tuple[dict[str, float], tuple[tuple[str, str], ...]]:
    """(leaf path -> relative error, problems), `auto` the truth. First the trees: each place
    where `hand` is not shaped like `auto` is a problem (path, what differs), and each of
    auto's leaves there gets an error of inf; only the leaves that match in path, shape and
    kind are compared by value, so no arithmetic ever mixes two misshapen leaves. A float0
    leaf (the cotangent of an integer input) has no values: matched in shape, it is left out."""
    hand, auto = jax.tree.map(np.asarray, (hand, auto))
    leaves = jax.tree.leaves(auto)
    top = max((float(np.abs(a).max(initial=0.0)) for a in leaves
               if a.dtype != jax.dtypes.float0), default=0.0)
    errors, problems = {}, []
    for path, h, a, what in _pairs(hand, auto, ()):
        if what is not None:
            problems.append((jax.tree_util.keystr(path), what))
        for leaf_path, leaf in jax.tree_util.tree_leaves_with_path(a):
            if what is None and leaf.dtype == jax.dtypes.float0:
                continue                                         # nothing to compare
            errors[jax.tree_util.keystr((*path, *leaf_path))] = (
                float("inf") if what is not None else relative_error(h, leaf, FLOOR * top))
    return errors, tuple(problems)


def _pairs(hand, auto, path):
    """(path, hand, auto, what) for two trees walked side by side: each leaf of `auto` with
    its hand leaf (what = None), or a subtree where the two differ (what says how)."""
    children = jax.tree_util.default_registry.flatten_one_level_with_keys
    h_node, a_node = children(hand), children(auto)
    if a_node is None and h_node is None:                        # two leaves
        if hand.shape != auto.shape:
            what = f"expected shape {auto.shape}, got {hand.shape}"
        elif hand.dtype.kind != auto.dtype.kind:
            what = f"expected {auto.dtype} numbers, got {hand.dtype}"
        else:
            what = None
        yield path, hand, auto, what
    elif (a_node is None or h_node is None or type(hand) is not type(auto)
          or [k for k, _ in h_node[0]] != [k for k, _ in a_node[0]]):
        yield path, hand, auto, f"expected {_spec(auto)}, got {_spec(hand)}"
    else:
        for (key, h), (_, a) in zip(h_node[0], a_node[0], strict=True):
            yield from _pairs(h, a, (*path, key))


class _Text(str):
    def __repr__(self):
        return str(self)


def _spec(tree, most: int = 160) -> str:
    """A tree with its leaves as dtype[shape]: {'s': float64[4]}; cut at `most` characters."""
    text = repr(jax.tree.map(lambda v: _Text(f"{v.dtype}{list(v.shape)}"), tree))
    return text if len(text) <= most else text[:most - 3] + "..."


def _copy(key):
    """A second key with the same bits: both sides draw the same dropout mask, and jax's
    key-reuse checker sees two keys each used once."""
    return None if key is None else jax.random.wrap_key_data(jax.random.key_data(key))


@partial(jax.jit, static_argnames=("net", "train"))
def both_grads(net, params: model.Params, batch: Dataset, w: jax.Array | None = None,
               key=None, *, train: bool = True):
    """(hand-written backprop, jax.grad of the loss): two trees shaped like params, one program."""
    hand = model.grads(net, params, batch, w, train=train, key=key)
    auto = jax.grad(lambda p: model.loss(net, p, batch, w, train=train, key=_copy(key)))(params)
    return hand, auto


def _cast(tree, dtype):
    return jax.tree.map(lambda v: jnp.asarray(v, dtype), tree)


def _cast_batch(batch, dtype) -> Dataset:
    """x and y in `dtype`, but class ids (integer y) kept integers: they are not numbers to
    differentiate by, and a float id is refused."""
    x, y = batch
    return Dataset(x if labels.is_ids(x) else jnp.asarray(x, dtype),        # tokens stay ints
                   y if labels.is_ids(y) else jnp.asarray(y, dtype))


def gradcheck(net, params: model.Params, batch: Dataset, w=None, *, key=None,
              train: bool = True, x64: bool = True, rtol: float | None = None) -> GradcheckReport:
    """Compare `model.grads` with `jax.grad(model.loss)` leaf by leaf, in training mode (both
    sides draw the same dropout masks from `key`, by default `jax.random.key(0)`) or with
    `train=False`.

    x64=True (default) runs both in float64 (the params and batch are cast; class ids stay
    integers); rtol defaults to 1e-9 in float64 and 1e-4 in float32.
    """
    model.check_params(net, params)
    batch = model.check_batch(net, batch)               # before a cast: a bad batch compiles
    with jax.enable_x64(x64):                           # nothing
        dtype = jnp.float64 if x64 else jnp.float32
        params, batch = _cast(params, dtype), _cast_batch(batch, dtype)
        w = None if w is None else _cast(w, dtype)
        if key is None and train and net.layer.needs_key:
            key = jax.random.key(0)                     # a check: any fixed mask will do
        hand, auto = both_grads(net, params, batch, w, key, train=train)
        errors, problems = compare(hand, auto)
    return GradcheckReport(errors, rtol if rtol is not None else (1e-9 if x64 else 1e-4),
                           "float64" if x64 else "float32", problems)


def check_layer(layer, input_shape, *, key=None, n: int = 3, train: bool = True,
                x: jax.Array | None = None, params=None, x64: bool = True,
                rtol: float | None = None) -> GradcheckReport:
    """One layer alone: its hand-written `vjp` against `jax.vjp` of its `apply`, for its params
    and its input, with a random cotangent g. `x` defaults to `n` normal draws of
    `input_shape`, `params` to the layer's `init`; `key` (default `jax.random.key(0)`) draws
    them and the dropout mask. The report's `dx` row is dL/dx. An integer `x` stays integers,
    and a layer with a `vocab` (Embedding) gets tokens in [0, vocab) by default: its dL/dx must
    be float0 zeros of x's shape, as jax.vjp's (a note in the report says dx is not compared).

        check_layer(Conv2D(8, (3, 3), stride=2), input_shape=(9, 9, 3))
    """
    layer = L.as_layer(layer)
    input_shape = tuple(input_shape)
    out_shape = layer.shape(input_shape)                 # an InputError names a bad shape
    key = jax.random.key(0) if key is None else rng.check_key(key)
    with jax.enable_x64(x64):
        dtype = jnp.float64 if x64 else jnp.float32
        k_p, k_x, k_g, k_a = jax.random.split(key, 4)
        p = layer.init(k_p, input_shape, dtype) if params is None else _cast(params, dtype)
        vocab = getattr(layer, "vocab", None)
        if x is None and isinstance(vocab, int):         # tokens, for an Embedding
            x = jax.random.randint(k_x, (n, *input_shape), 0, vocab)
        elif x is None:
            x = jax.random.normal(k_x, (n, *input_shape), dtype)
        tokens = jnp.issubdtype(jnp.asarray(x).dtype, jnp.integer)
        x = jnp.asarray(x) if tokens else jnp.asarray(x, dtype)   # tokens are not numbers
        g = jax.random.normal(k_g, (x.shape[0], *out_shape), dtype)
        keys = L.row_keys(k_a, x.shape[0])               # one key per row, as in a network
        hand, auto = _layer_grads(layer, p, x, g, keys, train=bool(train))
        pair = isinstance(hand, (tuple, list)) and len(hand) == 2
        errors, problems = compare({"dp": hand[0], "dx": hand[1]} if pair else hand,
                                   {"dp": auto[0], "dx": auto[1]})
        errors = {_layer_path(k): v for k, v in errors.items()}
        problems = tuple((_layer_path(k), what) for k, what in problems)
    notes = ((f"dx not compared: x is {x.dtype} (tokens), not differentiated; the vjp's dx "
              "is float0 zeros of its shape, as jax.vjp's",)
             if tokens and "dx" not in dict(problems) else ())
    return GradcheckReport(errors, rtol if rtol is not None else (1e-9 if x64 else 1e-4),
                           "float64" if x64 else "float32", problems, notes)


def _layer_path(path: str) -> str:
    """check_layer's paths: "['dp']['w']" -> "['w']", "['dx']" -> "dx", and the whole tree
    (a vjp that returned no pair (dL/dp, dL/dx)) -> "dp, dx"."""
    return "dp, dx" if path == "" else path.replace("['dp']", "").replace("['dx']", "dx")


@partial(jax.jit, static_argnames=("layer", "train"))
def _layer_grads(layer, p, x, g, key, *, train):
    y, cache = layer.apply(p, x, train, key)
    hand = layer.vjp(p, cache, g)
    _, pull = jax.vjp(lambda p, x: layer.apply(p, x, train, _copy(key))[0], p, x)
    return hand, pull(g)
