"""Checkpoints: parameters (any pytree of numeric arrays) saved to and loaded from one `.npz`.

Contract: `save` writes an ordinary `.npz`: one `.npy` per leaf, keyed by its tree path
(`jax.tree_util.keystr`: "[0]['w']"), plus a header `__funcnn__` (UTF-8 JSON as a uint8 array)
holding the format version, the funcnn and JAX versions, the network description, the user's
metadata, the tree's shape and every leaf's dtype and shape. It is written whole or not at
all (funcnn.files.write_atomic), so a crash or a kill during a save leaves the previous file
whole. `load` reads with `allow_pickle=False` and checks every CRC, so nothing in a file runs
code or loads half-read; any fault in the file (not a zip, truncated, tampered, a leaf that
differs from the header or from `like`) raises `CheckpointError`, an `InputError`, naming the
file and the leaf. Bad arguments to `save` raise `InputError` /
`InputTypeError` before anything is written.

    fn.io.save("run/ckpt.npz", params, net, metadata={"epoch": 10})
    params = fn.io.load("run/ckpt.npz", like=params)      # or without like: the tuple of dicts
    net = fn.io.load_network("run/ckpt.npz")              # MLP(2 -> 8 -> 2, sigmoid, ...)
    fn.io.info("run/ckpt.npz")["metadata"]                # {'epoch': 10}

The network is described in the header as JSON, by names, never pickled
(`funcnn.descriptions`); a layer class of your own gets a name with
`fn.io.register_layer(cls)` (= `fn.descriptions.register_layer`).
"""
from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from funcnn import descriptions, model
from funcnn.checks import InputError, InputTypeError, short_repr
from funcnn.descriptions import register_layer  # noqa: F401 (fn.io.register_layer)
from funcnn.files import write_atomic

FORMAT = 1                  # bump when a reader of the old format could misread the new one
HEADER = "__funcnn__"       # the header's key in the .npz; never a tree path (those start "[")
# What a damaged zip can raise from inside zipfile, zlib or NumPy's .npy reader.
_BROKEN = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError, struct.error,
           NotImplementedError, RuntimeError, OverflowError, IndexError, TypeError)


class CheckpointError(InputError):
    """A checkpoint file is missing, damaged or not the one expected; the message names it."""


# --- save --------------------------------------------------------------------------------------

def save(path, params, net=None, *, metadata: dict | None = None) -> Path:
    """Write `params` (and `net`'s description, and `metadata`) to `path` atomically.

    params: a pytree of numeric arrays (funcnn's tuple with one entry per layer, an ensemble's
    stacked params, optimizer state); net: the `network(...)` or `mlp(...)` they belong to,
    rebuilt by `load_network` (its layers, activations, loss and init schemes must be funcnn's
    or registered: see the module's docstring);
    metadata: a dict of JSON values (numbers, strings, lists, dicts), returned by `info`.
    The parent directories are created; `path` is used as given (no ".npz" is added).
    Returns `path` as a Path.
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(f"path {path} is a directory; give a file name, like {path / 'ckpt.npz'}")
    _check_parent(path)
    arrays, leaves, tree = _flatten(params)
    described = None if net is None else descriptions.describe(net)
    if described is not None:
        _check_fits(net, leaves)
    header = {"format": FORMAT, "funcnn": _funcnn_version(), "jax": jax.__version__,
              "net": described, "metadata": _metadata(metadata),
              "tree": tree, "leaves": leaves}
    blob = np.frombuffer(json.dumps(header).encode(), np.uint8)
    return write_atomic(path, lambda f: np.savez(f, **{HEADER: blob}, **arrays))


def _check_parent(path: Path) -> None:
    """The directories above `path` must be directories or not exist yet (save creates them)."""
    for above in path.parents:
        if above.exists() or above.is_symlink():
            if not above.is_dir():
                raise InputError(f"path {path} cannot be written: {above} exists and is not a "
                                 "directory; save into a directory, or move that file away")
            return


def _flatten(params):
    """-> ({key: array as stored}, {key: {"dtype", "shape"}}, the tree as JSON or None)."""
    flat, treedef = jax.tree_util.tree_flatten_with_path(params)
    arrays, leaves = {}, {}
    for p, leaf in flat:
        key = jax.tree_util.keystr(p)
        if key in arrays:
            raise InputError(f"params has two leaves at the path {key}; a checkpoint needs "
                             "distinct paths (dict keys should be strings)")
        x = _numeric(key, leaf)
        arrays[key] = x.view(_stored(x.dtype))               # bfloat16 & co. as raw uints
        leaves[key] = {"dtype": x.dtype.name, "shape": list(x.shape)}
    keyed = jax.tree_util.tree_unflatten(treedef, list(arrays))   # the tree, keys as leaves
    return arrays, leaves, _encode(keyed)


def _numeric(key: str, leaf) -> np.ndarray:
    """The leaf as a NumPy array in native byte order, or InputTypeError naming it."""
    dtype = getattr(leaf, "dtype", None)
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        raise InputTypeError(f"params{key} is a PRNG key array; save jax.random.key_data(k) "
                             "and rebuild it with jax.random.wrap_key_data")
    x = np.asarray(leaf)
    if not (jnp.issubdtype(x.dtype, jnp.number) or x.dtype == np.bool_):
        raise InputTypeError(f"params{key} is {type(leaf).__name__} {short_repr(leaf)} (dtype "
                             f"{x.dtype}); a checkpoint holds numeric arrays only: put other "
                             "values in metadata=")
    return x.astype(x.dtype.newbyteorder("="), copy=False)


def _stored(dtype: np.dtype) -> np.dtype:
    """The dtype a leaf is stored as: itself, or an unsigned int of its width for the types
    NumPy does not know by name (bfloat16, float8_*), restored from the header on load."""
    return dtype if dtype.kind in "biufc" else np.dtype(f"u{dtype.itemsize}")


def _encode(node):
    """The tree as JSON: {"tuple": [...]}, {"list": [...]}, {"dict": {...}}, null, and at each
    leaf its key string; None if a node is anything else (then `load` needs `like=`)."""
    return _json_tree(node) if _plain(node) else None


def _plain(node) -> bool:
    """Made of tuples, lists, dicts with string keys and None only, with strings at the leaves?"""
    if isinstance(node, str) or node is None:
        return True
    if type(node) in (tuple, list):
        return all(_plain(c) for c in node)
    return type(node) is dict and all(isinstance(k, str) and _plain(c) for k, c in node.items())


def _json_tree(node):
    if isinstance(node, str) or node is None:
        return node
    if type(node) is dict:
        return {"dict": {k: _json_tree(c) for k, c in node.items()}}
    return {type(node).__name__: [_json_tree(c) for c in node]}


def _check_fits(net, leaves: dict) -> None:
    """The params must be net's: the leaves of `init(key, net)`, each of its shape after any
    leading ensemble axes, so a checkpoint never pairs params with the wrong description."""
    made = jax.eval_shape(lambda: model.init(jax.random.key(0), net))     # traced, never run
    want = {jax.tree_util.keystr(p): list(s.shape)
            for p, s in jax.tree_util.tree_flatten_with_path(made)[0]}
    found = {k: v["shape"] for k, v in leaves.items()}
    wrong = [(k, "is missing") for k in want if k not in found]
    wrong += [(k, f"is {found[k]}, not [..., {', '.join(map(str, s))}]") for k, s in want.items()
              if k in found and found[k][len(found[k]) - len(s):] != s]
    wrong += [(k, "is not a leaf of the network") for k in found if k not in want]
    if wrong:
        more = f" (and {len(wrong) - 6} more)" if len(wrong) > 6 else ""
        raise InputError(f"params do not fit net {net!r}: " + "; ".join(
            f"leaf {k}{_layer_of(net, k)} {why}" for k, why in wrong[:6]) + f"{more}. It needs "
            f"{_shapes(want)} (after any ensemble axes); pass the params made by "
            "funcnn.model.init(key, net)")


def _layer_of(net, key: str) -> str:
    """" (layer 3, BatchNorm)" for the leaf "[3]['gamma']" of a serial network, else ""."""
    layers = net.layer.layers
    i = key[1:key.find("]")] if key.startswith("[") else ""
    return f" (layer {i}, {layers[int(i)]!r})" if i.isdigit() and int(i) < len(layers) else ""


def _shapes(shapes: dict) -> str:
    return ", ".join(f"{k}{v}" for k, v in shapes.items())


def _metadata(metadata) -> dict:
    if metadata is None:
        return {}
    if not isinstance(metadata, dict) or not all(isinstance(k, str) for k in metadata):
        raise InputTypeError(f"metadata must be a dict with string keys, got "
                             f"{short_repr(metadata)}")
    for k, v in metadata.items():
        try:
            json.dumps(v)
        except (TypeError, ValueError) as e:
            raise InputError(f"metadata[{k!r}] cannot be stored as JSON ({e}); use numbers, "
                             "strings, lists and dicts (float(x) for a NumPy or JAX scalar, "
                             "x.tolist() for an array)") from None
    return metadata


def _funcnn_version() -> str:
    import funcnn                               # here, not at the top: funcnn imports this module
    return getattr(funcnn, "__version__", "unknown")


# --- load --------------------------------------------------------------------------------------

def load(path, like=None):
    """The params saved in `path`, as JAX arrays.

    like: None, to rebuild the saved tree (tuples, lists, dicts with string keys); or a pytree
    of arrays (or `jax.ShapeDtypeStruct`s) with the same paths, shapes and dtypes as the saved
    one, whose structure the result takes. Any difference raises `CheckpointError` naming the
    leaf and both shapes and dtypes.
    """
    path = Path(path)
    with _open(path) as zf:
        header = _read_header(path, zf)
        if like is None:
            if header["tree"] is None:
                raise CheckpointError(f"{path}: the saved params are not made of tuples, lists "
                                      "and dicts only, so they cannot be rebuilt alone; pass "
                                      "like= a pytree of the same structure")
            keys, treedef = jax.tree_util.tree_flatten(_decode(path, header["tree"]))
            if sorted(keys) != sorted(header["leaves"]):
                raise CheckpointError(f"{path}: the header's tree and leaf table disagree; "
                                      "the file is damaged")
        else:
            keys, treedef = _match(path, header["leaves"], like)
        arrays = [_read_leaf(path, zf, k, header["leaves"][k]) for k in keys]
    return jax.tree_util.tree_unflatten(treedef, [_to_jax(path, k, x)
                                                  for k, x in zip(keys, arrays, strict=True)])


def load_network(path):
    """The network description saved with the params (`save(path, params, net)`): an equal
    `network(...)` or `mlp(...)`, with the same hash."""
    path = Path(path)
    net = info(path)["net"]
    if net is None:
        raise CheckpointError(f"{path} holds no network description (it was saved without "
                              "net=); build the network with funcnn.model.network(...) or "
                              "funcnn.model.mlp(...)")
    try:
        return descriptions.rebuild(net)
    except (KeyError, TypeError, ValueError) as e:      # ValueError: InputError too
        raise CheckpointError(f"{path}: the network cannot be rebuilt from its description "
                              f"({type(e).__name__}: {e})") from None


def info(path) -> dict:
    """The checkpoint's header: {"format", "funcnn", "jax", "net", "metadata", "tree",
    "leaves": {path: {"dtype", "shape"}}}, checked against the file's entries."""
    path = Path(path)
    with _open(path) as zf:
        return _read_header(path, zf)


def _open(path: Path) -> zipfile.ZipFile:
    if not path.is_file():
        where = "is a directory" if path.is_dir() else "does not exist"
        raise CheckpointError(f"checkpoint {path} {where}; give the file fn.io.save wrote")
    try:
        return zipfile.ZipFile(path)
    except _BROKEN as e:
        raise CheckpointError(f"{path}: not a readable .npz ({e}): the file is truncated, "
                              "damaged or not a checkpoint") from None


def _read_header(path: Path, zf: zipfile.ZipFile) -> dict:
    names = set(zf.namelist())
    if HEADER + ".npy" not in names:
        raise CheckpointError(f"{path}: no {HEADER} entry, so it is not a funcnn checkpoint "
                              "(or it is damaged); its entries: " + ", ".join(sorted(names)[:10]))
    raw = _read_npy(path, zf, HEADER)
    try:
        if raw.dtype != np.uint8 or raw.ndim != 1:
            raise ValueError(f"the header is {raw.dtype}{list(raw.shape)}, not uint8[n]")
        header = json.loads(raw.tobytes().decode())
        if not isinstance(header, dict):
            raise ValueError("the header is not a JSON object")
        if not isinstance(header.get("format"), int):
            raise ValueError("no format version")
        leaves = header["leaves"]
        if not isinstance(leaves, dict) or not all(
                isinstance(v, dict) and isinstance(v.get("dtype"), str)
                and isinstance(v.get("shape"), list) for v in leaves.values()):
            raise ValueError("the header's leaf table is malformed")
        lacking = [f for f in ("net", "metadata", "tree") if f not in header]
        if lacking:
            raise ValueError(f"the header lacks {lacking}")
    except (ValueError, KeyError, TypeError) as e:   # JSON, UTF-8 and field errors
        raise CheckpointError(f"{path}: damaged header ({type(e).__name__}: {e})") from None
    if header["format"] > FORMAT:
        raise CheckpointError(f"{path}: checkpoint format {header['format']}, but this funcnn "
                              f"({_funcnn_version()}) reads format {FORMAT} and older; upgrade "
                              "funcnn")
    extra = names - {k + ".npy" for k in leaves} - {HEADER + ".npy"}
    missing = [k for k in leaves if k + ".npy" not in names]
    if extra or missing:
        raise CheckpointError(f"{path}: its entries do not match its header: missing "
                              f"{missing or 'none'}, unexpected {sorted(extra) or 'none'}; the "
                              "file is damaged")
    return header


def _read_npy(path: Path, zf: zipfile.ZipFile, key: str) -> np.ndarray:
    """One entry, its CRC checked (zf.read reads it whole), parsed without pickle."""
    try:
        data = zf.read(key + ".npy")
        x = np.load(io.BytesIO(data), allow_pickle=False)
        if not isinstance(x, np.ndarray):
            raise ValueError("not a .npy array")
        return x
    except _BROKEN as e:
        raise CheckpointError(f"{path}: entry {key} is damaged or not a plain array "
                              f"({type(e).__name__}: {e}); the file is truncated or tampered "
                              "with") from None


def _read_leaf(path: Path, zf: zipfile.ZipFile, key: str, want: dict) -> np.ndarray:
    x = _read_npy(path, zf, key)
    try:
        dtype = jnp.dtype(want["dtype"])
    except TypeError:
        raise CheckpointError(f"{path}: leaf {key} has unknown dtype {want['dtype']!r} in the "
                              "header") from None
    if x.dtype != _stored(dtype) or list(x.shape) != want["shape"]:
        raise CheckpointError(f"{path}: leaf {key} is {x.dtype}{list(x.shape)} but the header "
                              f"says {want['dtype']}{want['shape']}; the file is damaged")
    return x.view(dtype)


def _decode(path: Path, node):
    """The skeleton tree from its JSON: the same containers, each leaf its key string."""
    if isinstance(node, str) or node is None:
        return node
    if isinstance(node, dict) and len(node) == 1:
        kind, children = next(iter(node.items()))
        if kind in ("tuple", "list") and isinstance(children, list):
            return (tuple if kind == "tuple" else list)(_decode(path, c) for c in children)
        if kind == "dict" and isinstance(children, dict):
            return {k: _decode(path, c) for k, c in children.items()}
    raise CheckpointError(f"{path}: damaged tree in the header at {str(node)[:80]}")


def _match(path: Path, leaves: dict, like):
    """Like's keys in order and its treedef, after checking them against the file's leaves."""
    flat, treedef = jax.tree_util.tree_flatten_with_path(like)
    want = {jax.tree_util.keystr(p): leaf for p, leaf in flat}
    missing = [k for k in want if k not in leaves]
    extra = [k for k in leaves if k not in want]
    if missing or extra:
        raise CheckpointError(f"{path}: its leaves do not match like's: like has "
                              f"{missing or 'no'} leaves the file lacks; the file has "
                              f"{extra or 'no'} leaves like lacks. The file holds "
                              f"{_table(leaves)}")
    wrong = []
    for k, leaf in want.items():
        shape = tuple(np.shape(leaf) if not hasattr(leaf, "shape") else leaf.shape)
        dtype = np.dtype(leaf.dtype if hasattr(leaf, "dtype") else np.asarray(leaf).dtype)
        found = leaves[k]
        if (found["dtype"], tuple(found["shape"])) != (dtype.name, shape):
            wrong.append(f"{k} is {found['dtype']}{found['shape']} in the file but "
                         f"{dtype.name}{list(shape)} in like")
    if wrong:
        raise CheckpointError(f"{path}: leaf " + "; leaf ".join(wrong) + ". Were these params "
                              "saved for another network or dtype?")
    return list(want), treedef


def _to_jax(path: Path, key: str, x: np.ndarray) -> jax.Array:
    if jax.dtypes.canonicalize_dtype(x.dtype) != x.dtype:       # float64 with x64 off
        raise CheckpointError(f"{path}: leaf {key} is {x.dtype}, which JAX would cut to "
                              f"{jax.dtypes.canonicalize_dtype(x.dtype)}; turn on "
                              "jax.config.update('jax_enable_x64', True) before loading")
    return jnp.asarray(x)


def _table(leaves: dict) -> str:
    return ", ".join(f"{k} {v['dtype']}{v['shape']}" for k, v in leaves.items())

