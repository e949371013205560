"""A network as JSON, by names: what a checkpoint says its params belong to.

Contract: `describe(net)` turns a `network(...)` or `mlp(...)` into JSON values, and
`rebuild(description)` gives back an equal network, with the same hash (`jit` does not compile
again); anything that has no name here raises `InputError` naming it and its place.
Names, never pickles. An `mlp` as
{"sizes", "hidden", "output", "loss", "init"}; a `network` as {"kind": "network",
"input_shape": [...], "loss": name, "layer": L}, where a layer L is {"class": its class name,
one entry per dataclass field, under its constructor's argument name}, each value a number, a
string, null, a list (a tuple), a layer, {"activation": name} of `funcnn.math.ACTIVATIONS` or
{"scheme": name, **fields} of `funcnn.initializers.SCHEMES`:

    {"class": "Conv2D", "filters": 32, "kernel": [3, 3], "stride": [1, 1], "padding": "SAME",
     "init": {"scheme": "glorot"}}
    {"class": "Residual", "layer": {"class": "Act", "act": {"activation": "relu"}}}

(The tag is "class", a name no field can have, so a field called `layer` keeps its name.)
`describe` rebuilds each layer from its description and refuses one that does not come back equal,
so `rebuild` gives a network equal to the saved one, with the same hash (`jit` does not
compile again). A layer, activation, loss or init scheme without a name here is refused by
`describe` with an `InputError` naming it and its place (`net.layer.layers[3]`). A layer class of
your own gets a name by registering it, in the program that saves and in the one that loads:

    @fn.descriptions.register_layer
    @dataclass(frozen=True)
    class Scale(fn.layers.Layer):            # fields: JSON values, layers, activations, schemes
        c: float
        ...
"""
from __future__ import annotations

import dataclasses

from funcnn import initializers, losses, math, model
from funcnn import layers as L
from funcnn.checks import InputError, InputTypeError, short_repr

INITS = initializers.SCHEMES                # the init schemes saved by name
# The layers saved by name: every public layer class of funcnn.layers, and those registered.
LAYERS = {cls.__name__: cls for cls in vars(L).values()
          if isinstance(cls, type) and issubclass(cls, L.Layer) and dataclasses.is_dataclass(cls)
          and not cls.__name__.startswith("_")}
# Where a built-in layer's constructor names a field otherwise: Dense(init=) sets init_scheme.
_ARGUMENTS = {L.Dense: {"init_scheme": "init"}, L.Conv2D: {"init_scheme": "init"},
              L.Reshape: {"target": "shape"}}


def describe(net) -> dict:
    """An MLP by names: {"sizes", "hidden", "output", "loss", "init": {"scheme", **fields}};
    a network: {"kind": "network", "input_shape", "loss", "layer"} (see the module's docstring)."""
    if isinstance(net, model.Network):
        return _describe_network(net)
    if not isinstance(net, model.MLP):
        raise InputTypeError(f"net must be a network description from funcnn.model.network(...) "
                             f"or funcnn.model.mlp(...), got {type(net).__name__}")
    for what, found, known in (("net.hidden", net.hidden, math.ACTIVATIONS),
                               ("net.output", net.output, math.ACTIVATIONS),
                               ("net.loss", net.loss, losses.LOSSES)):
        if known.get(found.name) != found:
            raise InputError(f"{what} is {found.name!r}, not one of funcnn's ({', '.join(known)}), "
                             "so it cannot be saved by name; save the params without net= and "
                             "describe the network in metadata=")
    if INITS.get(type(net.init).__name__) is not type(net.init):
        raise InputError(f"net.init is {net.init!r}, not one of funcnn's schemes "
                         f"({', '.join(INITS)}); save without net= and describe it in metadata=")
    return {"sizes": list(net.sizes), "hidden": net.hidden.name, "output": net.output.name,
            "loss": net.loss.name,
            "init": {"scheme": type(net.init).__name__, **dataclasses.asdict(net.init)}}


def rebuild(description):
    """The network `describe` wrote: an equal `network(...)` or `mlp(...)`. Raises
    `InputError` (or KeyError/TypeError for a malformed description) saying what is wrong."""
    net = description
    if isinstance(net, dict) and net.get("kind") == "network":
        if net.get("loss") not in losses.LOSSES:
            raise InputError(f"net.loss is {net.get('loss')!r}, not one of funcnn's "
                             f"({', '.join(losses.LOSSES)})")
        return model.network(_layer_from_json(net.get("layer"), "net.layer"),
                             tuple(net["input_shape"]), losses.LOSSES[net["loss"]])
    try:
        scheme = dict(net["init"])
        init = INITS[scheme.pop("scheme")](**scheme)
        return model.mlp(net["sizes"], math.ACTIVATIONS[net["hidden"]],
                         math.ACTIVATIONS[net["output"]], losses.LOSSES[net["loss"]], init)
    except (KeyError, TypeError, ValueError) as e:      # ValueError: InputError too
        raise InputError(f"the network description {net} cannot be rebuilt "
                         f"({type(e).__name__}: {e}); known activations: "
                         f"{', '.join(math.ACTIVATIONS)}; losses: {', '.join(losses.LOSSES)}; "
                         f"init schemes: {', '.join(INITS)}") from None


def register_layer(cls):
    """Let `save` describe layers of `cls` and `load_network` rebuild them; returns `cls`, so
    it also works as a decorator. Register it in every program that saves or loads it.

    cls: a subclass of `funcnn.layers.Layer` and a frozen dataclass whose constructor takes
    its fields as keyword arguments (the dataclass's own `__init__` does), each an int, float,
    string, None, a tuple of these, a layer, an activation of `funcnn.math.ACTIVATIONS` or an
    init scheme of `funcnn.initializers.SCHEMES`. It is saved under `cls.__name__`.
    """
    if not (isinstance(cls, type) and issubclass(cls, L.Layer)):
        raise InputTypeError(f"register_layer takes a layer class, a subclass of "
                             f"funcnn.layers.Layer; got {short_repr(cls)}")
    if not (dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen):
        raise InputError(f"register_layer({cls.__name__}): the class must be a frozen dataclass "
                         "(decorate it with @dataclasses.dataclass(frozen=True)), so its fields "
                         "describe it and it hashes by value")
    known = LAYERS.get(cls.__name__)
    if known is not None and (known.__module__, known.__qualname__) != (cls.__module__,
                                                                          cls.__qualname__):
        raise InputError(f"register_layer({cls.__module__}.{cls.__qualname__}): the name "
                         f"{cls.__name__!r} is taken by {known.__module__}.{known.__qualname__}; "
                         "rename your class")
    LAYERS[cls.__name__] = cls                 # the same class, redefined (a notebook): replaced
    return cls


def _describe_network(net: model.Network) -> dict:
    if losses.LOSSES.get(net.loss.name) != net.loss:
        raise InputError(f"net.loss is {net.loss.name!r}, not one of funcnn's "
                         f"({', '.join(losses.LOSSES)}), so it cannot be saved by name; save "
                         "the params without net= and describe the network in metadata=")
    return {"kind": "network", "input_shape": list(net.input_shape), "loss": net.loss.name,
            "layer": _layer_json(net.layer, "net.layer")}


def _layer_json(layer, where: str) -> dict:
    """{"class": name, argument: value, ...}, checked to rebuild an equal layer."""
    cls = type(layer)
    if LAYERS.get(cls.__name__) is not cls:
        raise InputError(f"{where} ({layer!r}) is a {cls.__module__}.{cls.__qualname__}, not a "
                         "layer of funcnn.layers, so save cannot describe it by name; call "
                         f"funcnn.io.register_layer({cls.__name__}) before save (and before "
                         "load_network), or save the params without net= and describe the "
                         "network in metadata=")
    names = _ARGUMENTS.get(cls, {})
    out = {"class": cls.__name__}
    for f in dataclasses.fields(layer):
        out[names.get(f.name, f.name)] = _value_json(getattr(layer, f.name), f.name, layer, where)
    try:
        back = _layer_from_json(out, where)
    except (TypeError, ValueError) as e:                  # InputError is a ValueError
        raise InputError(f"{where} ({layer!r}) cannot be rebuilt from its description {out} "
                         f"({type(e).__name__}: {e}); its class's constructor must take its "
                         "fields as keyword arguments") from None
    if back != layer or hash(back) != hash(layer):
        raise InputError(f"{where} ({layer!r}) comes back from its description {out} as "
                         f"{back!r}, not equal to it; its class's constructor must take its "
                         "fields as keyword arguments and keep them as given (tuples, not lists)")
    return out


def _value_json(v, field: str, layer, where: str):
    """A field's value as JSON: scalars as they are, tuples as lists, the rest tagged by name."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, math.Activation):                   # before tuple: a NamedTuple is one
        if math.ACTIVATIONS.get(v.name) == v:
            return {"activation": v.name}
        why = (f"the activation {v.name!r}, not one of funcnn.math's "
               f"({', '.join(math.ACTIVATIONS)})")
    elif isinstance(v, L.Layer):
        return _layer_json(v, f"{where}.{field}")
    elif INITS.get(type(v).__name__) is type(v):
        return {"scheme": type(v).__name__, **dataclasses.asdict(v)}
    elif type(v) in (tuple, list):
        return [_value_json(c, f"{field}[{i}]", layer, where) for i, c in enumerate(v)]
    elif callable(v):
        why = (f"{short_repr(v)}, not one of funcnn's init schemes ({', '.join(INITS)}) or "
               "activations")
    else:
        why = (f"{type(v).__name__} {short_repr(v)}, not a plain int, float, string, None, tuple, "
               "layer, activation or init scheme")
    raise InputError(f"{where} ({layer!r}) cannot be saved by name: its {field} is {why}; save "
                     "the params without net= and describe the network in metadata=")


def _layer_from_json(node, where: str):
    """The layer a `_layer_json` description names; InputError naming `where` if it cannot."""
    name = node.get("class") if isinstance(node, dict) else None
    if not isinstance(name, str):
        raise InputError(f"{where} is {short_repr(node)}, not a layer's description")
    if name not in LAYERS:
        raise InputError(f"{where} is a layer {name!r} this program has not registered; call "
                         f"funcnn.io.register_layer({name}) with its class before load_network")
    args = {k: _value_from_json(v, f"{where}.{k}") for k, v in node.items() if k != "class"}
    try:
        return LAYERS[name](**args)
    except (TypeError, ValueError) as e:
        raise InputError(f"{where}: {name}(**{args}) fails ({type(e).__name__}: {e})") from None


def _value_from_json(v, where: str):
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, list):
        return tuple(_value_from_json(c, f"{where}[{i}]") for i, c in enumerate(v))
    if isinstance(v, dict) and "class" in v:
        return _layer_from_json(v, where)
    if isinstance(v, dict) and set(v) == {"activation"}:
        if v["activation"] not in math.ACTIVATIONS:
            raise InputError(f"{where} is the activation {v['activation']!r}, not one of "
                             f"funcnn.math's ({', '.join(math.ACTIVATIONS)})")
        return math.ACTIVATIONS[v["activation"]]
    if isinstance(v, dict) and isinstance(v.get("scheme"), str):
        fields = {k: c for k, c in v.items() if k != "scheme"}
        if v["scheme"] not in INITS:
            raise InputError(f"{where} is the init scheme {v['scheme']!r}, not one of funcnn's "
                             f"({', '.join(INITS)})")
        return INITS[v["scheme"]](**fields)
    raise InputError(f"{where} is {short_repr(v)}, not a value a network description holds")
