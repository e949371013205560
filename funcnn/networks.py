"""Network descriptions: the Clojure project's record (`mlp`), and layers composed (`network`).

Contract: a description holds no numbers; it is frozen and hashable, so it is a static argument
of `jit` (one compile per network and shape). It says the layers (`layer`, a `serial`), one
example's `input_shape` and the `loss`; `funcnn.model` computes with it. Everything a
description can get wrong is refused here, when it is built, with the fix in the message:
shapes layer by layer, a loss that cannot read the output, a layer that cannot hash.
"""
from __future__ import annotations

import math as _math
from dataclasses import dataclass
from functools import cached_property
from typing import Sequence

import jax

from funcnn import layers as L
from funcnn.checks import InputError, InputTypeError, integer
from funcnn.initializers import check_scheme, uniform
from funcnn.labels import LABELS
from funcnn.losses import Loss
from funcnn.math import Activation, identity


# --- the descriptions ------------------------------------------------------------------------

class _Net:
    """What every network description shares; a subclass gives `layer`, `input_shape`, `loss`."""

    @property
    def output_shape(self) -> tuple:
        return tuple(self.layer.shape(self.input_shape))

    @property
    def output_activation(self) -> Activation:
        """The activation that makes the output (identity if the last layer has none)."""
        act = getattr(self.layer.layers[-1], "act", None)
        return act if isinstance(act, Activation) else identity

    def summary(self) -> str:
        """The layers one a line, with output shapes and parameter counts (Keras's summary)."""
        layers, shapes = self.layer.layers, self.layer.shapes(self.input_shape)
        from funcnn.model import init             # (model computes with descriptions)
        params = jax.eval_shape(lambda: init(jax.random.key(0), self))
        rows = [(f"{i}: {layer!r}", str(shape), sum(_math.prod(v.shape) for v in
                                                 jax.tree.leaves(p)))
                for i, (layer, shape, p) in enumerate(zip(layers, shapes, params))]
        w0 = max(len(r[0]) for r in rows + [("layer", "", 0)])
        w1 = max(len(r[1]) for r in rows + [("", "output", 0)])
        lines = [f"{'layer':<{w0}}  {'output':<{w1}}  params",
                 f"{'input':<{w0}}  {tuple(self.input_shape)}"]
        lines += [f"{a:<{w0}}  {b:<{w1}}  {c:,}" for a, b, c in rows]
        lines.append(f"total {sum(r[2] for r in rows):,} numbers; loss {self.loss}")
        return "\n".join(lines)


@dataclass(frozen=True)
class Network(_Net):
    layer: L.Serial           # the layers, in order (a lone layer is made a serial of one)
    input_shape: tuple        # one example's shape: (784,), (28, 28, 1), ...
    loss: Loss                # of the output and the labels

    def __repr__(self) -> str:
        return f"network({self.layer!r}, input {self.input_shape}, {self.loss})"


def network(layer, input_shape, loss: Loss) -> Network:
    """Describe a network: `layer` (a `serial` of layers, usually) on inputs of `input_shape`
    (one example's shape, no batch axis), trained on `loss`. Shapes are checked here, layer by
    layer, so a mistake is named before anything compiles:

        net = network(serial(Dense(128), relu, Dense(10)), input_shape=(784,),
                      loss=softmax_cross_entropy)
    """
    layer = L.as_layer(layer, "layer")
    layer = layer if isinstance(layer, L.Serial) else L.serial(layer)   # params: a tuple
    if not layer.layers:
        raise InputError("layer is an empty serial(): a network needs at least one layer, "
                         "e.g. serial(Dense(10))")
    _check_hashable(layer)
    shape = (input_shape,) if isinstance(input_shape, int) else input_shape
    try:
        shape = tuple(integer("input_shape", s, 1) for s in shape)
    except (InputError, InputTypeError, TypeError):
        shape = ()
    if not shape:
        raise InputError(f"input_shape must be one example's shape, positive ints like (784,) "
                         f"or (28, 28, 1); got {input_shape!r}")
    if not isinstance(loss, Loss):
        raise InputTypeError(f"loss must be a loss such as funcnn.losses.mse, got "
                             f"{type(loss).__name__}")
    out = tuple(layer.shape(shape))
    if len(out) not in (1, 2):                  # (k,), or one row per position (t, k)
        raise InputError(f"the network's output is {out} per example, but a loss compares a "
                         f"flat output (k,) (or a row per position, (t, k)) with its labels; "
                         f"end with Flatten() and a Dense(k)")
    net = Network(layer, shape, loss)
    _check_loss_fits(loss, net.output_activation, out[-1])
    return net


@dataclass(frozen=True)
class MLP(_Net):
    """The Clojure project's record: dense layers, one activation for every hidden layer."""
    sizes: tuple[int, ...]    # (d_in, hidden..., d_out)
    hidden: Activation        # after every layer but the last
    output: Activation        # after the last layer
    loss: Loss                # of the output and the labels
    init: object              # a scheme: (key, d_in, d_out, dtype) -> {"w", "b"}

    def __repr__(self) -> str:
        return f"MLP({' -> '.join(map(str, self.sizes))}, {self.hidden}, {self.output}, {self.loss})"

    @property
    def activations(self) -> tuple[Activation, ...]:
        return (self.hidden,) * (len(self.sizes) - 2) + (self.output,)

    @cached_property
    def layer(self) -> L.Serial:        # a Dense that carries its activation, per layer
        return L.serial(*(L.Dense(d, act, self.init)
                          for d, act in zip(self.sizes[1:], self.activations, strict=True)))

    @property
    def input_shape(self) -> tuple:
        return (self.sizes[0],)


def mlp(sizes: Sequence[int], hidden: Activation, output: Activation, loss: Loss,
        init=uniform(0.5)) -> MLP:
    """Describe a fully connected network. `mlp([2, 8, 2], ...)`: 2 inputs, a hidden layer of
    8 units, 2 outputs; `mlp([2, 4, 8, 1], ...)`: two hidden layers (4 then 8), 1 output."""
    try:
        sizes = tuple(sizes)                           # a list, a tuple, a range, a NumPy array
    except TypeError:
        raise InputError(f"sizes must list the layer widths, like [2, 8, 2]; got {sizes!r}") from None
    if len(sizes) < 2:
        raise InputError(f"sizes must list at least an input and an output size, like [2, 8, 2]; "
                         f"got {list(sizes)}")
    try:
        sizes = tuple(integer("sizes", s, 1) for s in sizes)
    except (InputError, InputTypeError):
        raise InputError(f"sizes must be positive ints (no zero layers), got {list(sizes)}") from None
    for name, act in (("hidden", hidden), ("output", output)):
        if not isinstance(act, Activation):
            raise InputTypeError(f"{name} must be an activation such as funcnn.math.sigmoid, "
                            f"got {type(act).__name__}")
    if not isinstance(loss, Loss):
        raise InputTypeError(f"loss must be a loss such as funcnn.losses.mse, got {type(loss).__name__}")
    check_scheme(init)
    _check_loss_fits(loss, output, sizes[-1])
    return MLP(sizes, hidden, output, loss, init)


def _check_loss_fits(loss, output: Activation, k: int) -> None:
    """Refuse a loss that cannot read the network's output, with the fix."""
    if loss.labels not in LABELS:
        raise InputError(f"loss {loss.name} says it reads labels={loss.labels!r}, not one of "
                         f"{', '.join(map(repr, LABELS))} (funcnn.labels); leave it out for "
                         "real targets shaped like the output")
    if loss.name == "sigmoid_binary_cross_entropy" and output.name in ("sigmoid", "softmax",
                                                                       "log_softmax"):
        raise InputError(f"loss sigmoid_binary_cross_entropy reads logits and applies the "
                         f"sigmoid itself, but the network's output activation is "
                         f"{output.name}; end with no activation (identity), or keep the "
                         "sigmoid and use binary_cross_entropy")
    if loss.name == "softmax_cross_entropy" and k < 2:
        raise InputError("loss softmax_cross_entropy needs k >= 2 outputs (one logit per "
                         "class), but the network has 1: with one output the softmax is "
                         "always 1 and nothing is learnt. Make the last layer 2 wide, or use "
                         "a sigmoid output with binary_cross_entropy")
    if loss.name == "binary_cross_entropy" and output.name not in ("sigmoid", "softmax"):
        raise InputError(f"loss binary_cross_entropy needs outputs in (0, 1), but the "
                         f"network's output activation is {output.name}; end with a sigmoid "
                         "(or use softmax_cross_entropy on the raw outputs)")
    if loss.name == "nll" and output.name != "log_softmax":
        raise InputError(f"loss nll needs log-probabilities, but the network's output "
                         f"activation is {output.name}; end with log_softmax (or use "
                         "softmax_cross_entropy on the raw outputs)")


def _check_hashable(layer) -> None:
    """A network is a static argument of jit: each layer in it must hash. And a layer of
    your own must have the protocol's shape and apply (funcnn/layers/__init__.py; serial
    names one without the vjp that training needs)."""
    for i, sub in enumerate(layer.layers):
        missing = [f for f in ("shape", "apply") if not callable(getattr(sub, f, None))]
        if missing:
            raise InputTypeError(f"layer {i} ({type(sub).__name__}) has no {', '.join(missing)}: "
                                 "a layer needs shape(input_shape), apply(p, x, train, key) "
                                 "and, to train, vjp(p, cache, g) (see funcnn/layers/__init__.py)")
        try:
            hash(sub)
        except TypeError as e:
            raise InputTypeError(f"layer {i} ({type(sub).__name__}) cannot be hashed ({e}); a "
                                 "layer is a description jit compiles for: make it a "
                                 "@dataclass(frozen=True) whose fields are numbers, strings or "
                                 "tuples (no lists, dicts or arrays)") from None
