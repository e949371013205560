"""Checkpoints: bitwise round trips, a kill -9 in the middle of a save, damaged files refused."""
import json
import os
import pickle
import random
import signal
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnn as fn
from funcnn import io as fio
from funcnn import layers as L
from funcnn.checks import InputError, InputTypeError


@pytest.fixture
def net():
    return fn.model.mlp([2, 8, 2], hidden=fn.math.sigmoid, output=fn.math.sigmoid,
                        loss=fn.losses.mse)


@pytest.fixture
def params(net):
    return fn.model.init(jax.random.key(0), net)


@pytest.fixture
def saved(tmp_path, params, net):
    return fio.save(tmp_path / "ckpt.npz", params, net, metadata={"epoch": 3})


def assert_bitwise(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert isinstance(x, jax.Array)
        assert (x.dtype, x.shape) == (y.dtype, y.shape)
        assert np.asarray(x).tobytes() == np.asarray(y).tobytes()


def refused(path, like=None, *names):
    """load must raise CheckpointError naming the file (and each of `names`)."""
    with pytest.raises(fio.CheckpointError) as e:
        fio.load(path, like=like)
    for name in (str(path),) + names:
        assert name in str(e.value), (name, str(e.value))
    return str(e.value)


# --- round trips -------------------------------------------------------------------------------

def test_round_trip_is_bitwise_with_and_without_like(saved, params, net):
    assert_bitwise(fio.load(saved, like=params), params)
    assert_bitwise(fio.load(saved), params)                 # rebuilt: a tuple of {"w", "b"}
    back = fio.load_network(saved)
    assert back == net and hash(back) == hash(net) and back.init == fn.model.uniform(0.5)
    head = fio.info(saved)
    assert head["metadata"] == {"epoch": 3}
    assert head["funcnn"] == fn.__version__ and head["jax"] == jax.__version__
    with np.load(saved, allow_pickle=False) as z:           # a plain .npz for any NumPy reader
        assert set(z.files) == {"__funcnn__", "[0]['w']", "[0]['b']", "[1]['w']", "[1]['b']"}


@pytest.mark.parametrize("init", [fn.model.uniform(1.0), fn.model.glorot(), fn.model.he(),
                                  fn.model.lecun()])
def test_every_init_scheme_and_activation_round_trips(tmp_path, init):
    net = fn.model.mlp([3, 4, 5, 2], fn.math.relu, fn.math.softmax,
                       fn.losses.softmax_cross_entropy, init)
    zeros = tuple({"w": np.zeros((d_in, d_out), np.float32), "b": np.zeros(d_out, np.float32)}
                  for d_in, d_out in zip(net.sizes[:-1], net.sizes[1:]))
    p = fio.save(tmp_path / "n.npz", zeros, net)
    assert fio.load_network(p) == net


def test_ensemble_bfloat16_and_general_pytrees(tmp_path, params, net):
    ensemble = jax.tree.map(lambda a: jnp.stack([a, 2 * a, -a]), params)     # leading axis 3
    e = fio.save(tmp_path / "e.npz", ensemble, net, metadata={"members": 3})
    assert_bitwise(fio.load(e), ensemble)
    assert fio.load_network(e) == net
    mixed = {"h": [jnp.arange(3, dtype=jnp.int8), None, (jnp.ones((2, 0)),)],
             "bf": jnp.linspace(-1, 1, 5, dtype=jnp.bfloat16), "flag": jnp.array(True)}
    assert_bitwise(fio.load(fio.save(tmp_path / "m.npz", mixed)), mixed)

    class State(NamedTuple):                                 # not a tuple/list/dict: needs like
        step: jax.Array
        v: tuple
    state = State(jnp.array(7, jnp.int32), params)
    p = fio.save(tmp_path / "s.npz", state)
    refused(p, None, "like=")
    assert_bitwise(fio.load(p, like=state), state)
    with pytest.raises(fio.CheckpointError, match="no network description"):
        fio.load_network(p)


def test_save_replaces_and_creates_parents_but_never_writes_over_a_directory(tmp_path, params):
    p = fio.save(tmp_path / "deep" / "er" / "c.npz", params)
    doubled = jax.tree.map(lambda a: 2 * a, params)
    fio.save(p, doubled)
    assert_bitwise(fio.load(p), doubled)
    assert os.listdir(p.parent) == ["c.npz"]                 # no temporary file left behind
    with pytest.raises(InputError, match="directory"):
        fio.save(tmp_path / "deep", params)
    assert (tmp_path / "deep").is_dir()


def test_a_failing_save_keeps_the_old_file_and_removes_its_temporary(saved, params, monkeypatch):
    before = saved.read_bytes()

    def savez_then_fail(f, **arrays):
        f.write(b"PK\3\4 half a file")
        raise OSError("disk full")
    monkeypatch.setattr(np, "savez", savez_then_fail)
    with pytest.raises(OSError, match="disk full"):
        fio.save(saved, jax.tree.map(lambda a: a + 1, params))
    assert saved.read_bytes() == before
    assert sorted(os.listdir(saved.parent)) == [saved.name]


# --- kill -9 during a save --------------------------------------------------------------------

# Saves version v, v+1, ... to the same file until killed; prints each version once it is saved.
# The big leaves alternate between two prepared buffers, so the loop is all saving.
CHILD = r"""
import sys
import numpy as np
from funcnn import io
target, first, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
big = [[np.full(n, k + 1, np.float32) for _ in range(4)] for k in (0, 1)]
print("ready", flush=True)
for v in range(first, 10**9):
    io.save(target, tuple({"w": w, "b": np.full(3, v, np.int32)} for w in big[v % 2]),
            metadata={"version": v})
    print(v, flush=True)
"""


def version_in(path):
    """The version a complete checkpoint holds, checking every byte of it."""
    params = fio.load(path)
    v = fio.info(path)["metadata"]["version"]
    for layer in params:
        assert np.all(np.asarray(layer["b"]) == v)
        assert np.all(np.asarray(layer["w"]) == v % 2 + 1)
    return v


@pytest.mark.slow
def test_kill_9_during_save_never_leaves_a_half_file(tmp_path):
    target = tmp_path / "big.npz"
    n = 12 * 2**20                           # 4 leaves of 48 MiB: ~200 MB a checkpoint
    rng = random.Random(0)
    held, caught_mid_save = None, 0          # the version under the target name, if any
    for r in range(4):
        first = 100 * r
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(target), str(first), str(n)],
                                 stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout.readline() == "ready\n"
            time.sleep(rng.uniform(0.0, 0.5) if r == 0 else rng.uniform(0.3, 2.5))
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
        saved = [int(line) for line in child.stdout.read().split()]
        child.stdout.close()
        # The file is the last version reported saved, or the one after it (renamed, then killed
        # before printing); if none was reported, the previous file or this child's first.
        allowed = {saved[-1], saved[-1] + 1} if saved else {held, first}
        if target.exists():
            held = version_in(target)
        else:
            held = None
        assert held in allowed, (held, allowed, saved)
        others = [f for f in os.listdir(tmp_path) if f != target.name]
        assert all(f.startswith(f".{target.name}.") and f.endswith(".tmp") for f in others)
        caught_mid_save += bool(others)
        for f in others:                     # a killed save's temporary stays; ours to clean up
            (tmp_path / f).unlink()
    assert caught_mid_save >= 1, "no kill landed inside a save; the test proved nothing"
    target.unlink(missing_ok=True)


# --- damaged files -----------------------------------------------------------------------------

def test_truncated_files_are_refused(saved, params, tmp_path):
    raw = saved.read_bytes()
    cut = tmp_path / "cut.npz"
    for at in (0, 1, 4, 30, len(raw) // 3, len(raw) // 2, len(raw) - 22, len(raw) - 1):
        cut.write_bytes(raw[:at])
        refused(cut, params)
        refused(cut, None)


def test_flipped_bytes_are_refused_or_harmless(saved, params, tmp_path):
    """Flip bytes all through the file: load refuses, or (a byte zip and NumPy do not read,
    like a timestamp) returns exactly the saved params. Never other numbers, never another
    exception."""
    raw = saved.read_bytes()
    bad = tmp_path / "flipped.npz"
    outcomes = []
    for i in range(0, len(raw), 3):
        b = bytearray(raw)
        b[i] ^= 0xFF
        bad.write_bytes(bytes(b))
        try:
            assert_bitwise(fio.load(bad, like=params if i % 2 else None), params)
            outcomes.append("same")
        except fio.CheckpointError as e:
            assert str(bad) in str(e)
            outcomes.append("refused")
    assert outcomes.count("refused") > len(outcomes) // 2
    middle = bytearray(raw)
    middle[len(raw) // 2 - 2: len(raw) // 2 + 2] = b"\0\1\2\3"
    bad.write_bytes(bytes(middle))
    refused(bad, params)


def test_files_that_are_not_checkpoints_are_refused(tmp_path, params):
    text = tmp_path / "notes.npz"
    text.write_text("hello\n")
    refused(text, params, "not a readable .npz")
    npy = tmp_path / "a.npz"
    np.save(npy.with_suffix(".npy"), np.ones(3))
    npy.with_suffix(".npy").rename(npy)
    refused(npy, params)
    plain = tmp_path / "plain.npz"
    np.savez(plain, **{"[0]['w']": np.ones((2, 8), np.float32)})
    refused(plain, params, "not a funcnn checkpoint")
    refused(tmp_path / "missing.npz", params, "does not exist")
    refused(tmp_path, params, "is a directory")


def rewrite(src: Path, dst: Path, entries: dict):
    """A copy of the zip `src` with some entries' bytes replaced (None removes one)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        names = zin.namelist() + [k for k in entries if k not in zin.namelist()]
        for name in names:
            data = entries[name] if name in entries else zin.read(name)
            if data is not None:
                zout.writestr(name, data)
    return dst


def npy_bytes(x, allow_pickle=False):
    import io
    f = io.BytesIO()
    np.save(f, x, allow_pickle=allow_pickle)
    return f.getvalue()


class Trap:
    """Unpickling it would make a directory: the proof that loading ran code."""
    def __init__(self, where):
        self.where = where

    def __reduce__(self):
        return os.mkdir, (self.where,)


def test_a_pickled_object_array_is_refused_and_never_unpickled(saved, params, tmp_path):
    marker = tmp_path / "pwned"
    obj = np.empty(2, dtype=object)
    obj[:] = [Trap(str(marker)), Trap(str(marker))]
    assert b"mkdir" in pickle.dumps(obj)
    bad = rewrite(saved, tmp_path / "obj.npz", {"[0]['b'].npy": npy_bytes(obj, True)})
    refused(bad, params, "[0]['b']")
    refused(bad, None, "[0]['b']")
    with pytest.raises(fio.CheckpointError):
        fio.info(rewrite(saved, tmp_path / "h.npz", {"__funcnn__.npy": npy_bytes(obj, True)}))
    assert not marker.exists()


def test_tampered_entries_are_refused(saved, params, tmp_path):
    header = json.loads(np.load(saved)["__funcnn__"].tobytes())
    def with_header(h, name):
        return rewrite(saved, tmp_path / name, {"__funcnn__.npy": npy_bytes(
            np.frombuffer(json.dumps(h).encode() if isinstance(h, dict) else h, np.uint8))})
    refused(with_header(b"{not json", "j.npz"), params, "damaged header")
    refused(with_header({**header, "format": 99}, "f.npz"), params, "upgrade funcnn")
    refused(with_header({**header, "tree": {"tuple": ["[9]['w']"]}}, "t.npz"), None, "disagree")
    refused(with_header({**header, "tree": {"set": []}}, "u.npz"), None, "damaged tree")
    # an entry whose array differs from the header, one missing, one added
    refused(rewrite(saved, tmp_path / "s.npz", {"[1]['w'].npy": npy_bytes(
        np.zeros((2, 8), np.float32))}), params, "[1]['w']", "float32[2, 8]", "float32[8, 2]")
    refused(rewrite(saved, tmp_path / "m.npz", {"[1]['w'].npy": None}), None, "[1]['w']")
    refused(rewrite(saved, tmp_path / "x.npz", {"[2]['w'].npy": npy_bytes(np.ones(2))}),
            None, "[2]['w']")


# --- like mismatches ---------------------------------------------------------------------------

def test_like_mismatches_name_the_leaf_and_both_shapes_and_dtypes(saved, params):
    wide = (params[0], {"w": jnp.zeros((8, 3)), "b": jnp.zeros(3)})
    refused(saved, wide, "[1]['w']", "float32[8, 2]", "float32[8, 3]")
    half = (params[0], {"w": params[1]["w"], "b": params[1]["b"].astype(jnp.float16)})
    refused(saved, half, "[1]['b']", "float32[2]", "float16[2]")
    deeper = params + ({"w": jnp.zeros((2, 2)), "b": jnp.zeros(2)},)
    refused(saved, deeper, "[2]['w']", "[2]['b']", "lacks")
    refused(saved, params[:1], "[1]['w']", "[1]['b']", "lacks")
    shapes = jax.eval_shape(lambda: params)                  # ShapeDtypeStructs work as like
    assert_bitwise(fio.load(saved, like=shapes), params)


# --- bad arguments -----------------------------------------------------------------------------

def test_bad_arguments_are_refused_before_writing(tmp_path, params, net):
    target = tmp_path / "c.npz"
    with pytest.raises(InputError, match=r"metadata\['lr'\]"):
        fio.save(target, params, metadata={"epoch": 1, "lr": np.float32(0.1)})
    with pytest.raises(InputTypeError, match="metadata must be a dict"):
        fio.save(target, params, metadata=[1, 2])
    with pytest.raises(InputTypeError, match=r"params\[1\]\['name'\].*numeric"):
        fio.save(target, (params[0], {**params[1], "name": "output"}))
    with pytest.raises(InputTypeError, match=r"params\['key'\].*key_data"):
        fio.save(target, {"key": jax.random.key(2)})
    with pytest.raises(InputError, match=r"do not fit net.*\[1\]\['w'\]\[8, 2\]"):
        fio.save(target, params[:1], net)
    with pytest.raises(InputTypeError, match="net must be"):
        fio.save(target, params, net="mlp")
    odd = fn.model.MLP(net.sizes, fn.math.Activation("swish", jax.nn.swish, None), net.output,
                       net.loss, net.init)                    # not in funcnn.math.ACTIVATIONS
    with pytest.raises(InputError, match="'swish'"):
        fio.save(target, params, odd)
    assert os.listdir(tmp_path) == []


def test_float64_checkpoint_needs_x64_to_load_without_loss(tmp_path, x64):
    p64 = {"w": jnp.linspace(0, 1, 7, dtype=jnp.float64)}
    p = fio.save(tmp_path / "d.npz", p64)
    assert_bitwise(fio.load(p), p64)
    jax.config.update("jax_enable_x64", False)
    refused(p, None, "float64", "jax_enable_x64")


# --- networks of layers ------------------------------------------------------------------------

def test_an_mlp_header_keeps_its_format(saved):
    assert fio.info(saved)["net"] == {"sizes": [2, 8, 2], "hidden": "sigmoid",
                                      "output": "sigmoid", "loss": "mse",
                                      "init": {"scheme": "uniform", "a": 0.5}}


@pytest.fixture
def cnn():
    """Every layer of funcnn.layers, small: 64 inputs -> 3 outputs, 663 numbers."""
    return fn.model.network(L.serial(
        L.Reshape((8, 8, 1)),
        L.Conv2D(4, 3, stride=(2, 1), padding=((1, 1), (0, 1)), init=fn.model.he()),  # (4, 7, 4)
        fn.math.relu,
        L.BatchNorm(momentum=0.2),
        L.MaxPool2D((2, 2), stride=1, padding="SAME"),                                 # (4, 7, 4)
        L.Residual(L.serial(L.Conv2D(4, 3, init=fn.model.uniform(0.3)), L.LayerNorm(),
                            fn.math.tanh)),
        L.AvgPool2D(),                                                                 # (2, 3, 4)
        L.Flatten(),
        L.Dropout(0.25),
        L.serial(L.Dense(16, fn.math.relu, init=fn.model.lecun()), L.Dense(3))),
        (64,), fn.losses.softmax_cross_entropy)


@pytest.mark.slow
def test_a_cnn_network_round_trips_bitwise_equal_and_without_recompiling(tmp_path, cnn,
                                                                        compiles):
    params = fn.model.init(jax.random.key(0), cnn)
    x = jax.random.normal(jax.random.key(1), (5, 64))
    y = fn.model.forward(cnn, params, x)
    p = fio.save(tmp_path / "cnn.npz", params, cnn, metadata={"epoch": 1})
    back = fio.load_network(p)
    assert isinstance(back, fn.model.Network)
    assert back == cnn and hash(back) == hash(cnn)
    assert_bitwise(fio.load(p), params)
    assert_bitwise(fio.load(p, like=params), params)
    loaded = fio.load(p)
    before = compiles()
    assert np.asarray(fn.model.forward(back, loaded, x)).tobytes() == np.asarray(y).tobytes()
    assert compiles() == before                      # an equal network: jit's cache hit
    head = fio.info(p)["net"]
    assert (head["kind"], head["input_shape"], head["loss"]) == ("network", [64],
                                                                "softmax_cross_entropy")
    layers = head["layer"]["layers"]
    assert [d["class"] for d in layers] == ["Reshape", "Conv2D", "Act", "BatchNorm", "MaxPool2D",
                                           "Residual", "AvgPool2D", "Flatten", "Dropout",
                                           "Serial"]
    assert layers[1] == {"class": "Conv2D", "filters": 4, "kernel": [3, 3], "stride": [2, 1],
                         "padding": [[1, 1], [0, 1]], "init": {"scheme": "he"},
                         "formulation": "auto"}
    assert layers[2] == {"class": "Act", "act": {"activation": "relu"}}
    assert layers[5]["layer"]["layers"][0]["init"] == {"scheme": "uniform", "a": 0.3}
    assert layers[9]["layers"][0] == {"class": "Dense", "n": 16, "act": {"activation": "relu"},
                                      "init": {"scheme": "lecun"}}


def test_batchnorm_running_statistics_round_trip(tmp_path, cnn):
    params = list(fn.model.init(jax.random.key(0), cnn))
    assert set(params[3]) == {"gamma", "beta", "mean", "var"}
    fresh = tuple(params)
    params[3] = {**params[3], "mean": jnp.array([0.5, -1.0, 2.0, 0.25]),   # as after training
                 "var": jnp.array([2.0, 0.5, 1.5, 3.0])}
    params = tuple(params)
    x = jax.random.normal(jax.random.key(1), (5, 64))
    y = fn.model.forward(cnn, params, x)             # evaluation reads the running statistics
    assert not np.allclose(y, fn.model.forward(cnn, fresh, x))
    p = fio.save(tmp_path / "bn.npz", params, cnn)
    loaded = fio.load(p)
    assert_bitwise(loaded[3], params[3])
    assert fio.info(p)["leaves"]["[3]['mean']"] == {"dtype": "float32", "shape": [4]}
    out = fn.model.forward(fio.load_network(p), loaded, x)
    assert np.asarray(out).tobytes() == np.asarray(y).tobytes()


@dataclass(frozen=True)
class Scale(L.Layer):
    """y = c x: a layer of the user's own, which funcnn.io does not know."""
    c: float

    def shape(self, input_shape):
        return input_shape

    def apply(self, p, x, train=False, key=None):
        return self.c * x, None

    def vjp(self, p, cache, g):
        return (), self.c * g                        # y = c x  =>  dL/dx = c g


@dataclass(frozen=True)
class Ones:
    """An init scheme of the user's own: w = 1, b = 0."""
    def __call__(self, key, d_in, d_out, dtype):
        return {"w": jnp.ones((d_in, d_out), dtype), "b": jnp.zeros(d_out, dtype)}


swish = fn.math.Activation("swish", jax.nn.swish, None)                 # not in ACTIVATIONS


@pytest.mark.parametrize("layer, loss, names", [
    (L.serial(L.Dense(4), L.serial(fn.math.relu, Scale(2.0))), fn.losses.mse,
     ["net.layer.layers[1].layers[1]", "Scale(c=2.0)", "register_layer(Scale)"]),
    (L.serial(L.Dense(4), L.Residual(L.Dense(4, swish))), fn.losses.mse,
     ["net.layer.layers[1].layer", "Dense(4, swish)", "'swish'", "without net="]),
    (L.serial(L.Dense(4, init=Ones())), fn.losses.mse,
     ["net.layer.layers[0]", "Dense(4)", "init_scheme", "Ones()", "without net="]),
    (L.serial(L.Dense(4)), fn.losses.Loss("hinge", fn.losses.mse.fn, fn.losses.mse.vjp),
     ["net.loss", "'hinge'", "without net="]),
])
def test_what_cannot_be_named_is_refused_naming_the_layer(tmp_path, layer, loss, names):
    net = fn.model.network(layer, (3,), loss)
    params = fn.model.init(jax.random.key(0), net)
    with pytest.raises(InputError) as e:
        fio.save(tmp_path / "c.npz", params, net)
    for name in names:
        assert name in str(e.value), (name, str(e.value))
    assert os.listdir(tmp_path) == []


@dataclass(frozen=True)
class Mix(L.Layer):
    """y = c act(inner(x)): a user's layer with every kind of field a checkpoint can name."""
    inner: L.Layer
    act: fn.math.Activation
    c: float = 1.0
    mode: str = "scale"
    axes: tuple = (0, (1, 2))
    scheme: object = fn.model.glorot()
    note: object = None

    def shape(self, input_shape):
        return self.inner.shape(input_shape)

    def init(self, key, input_shape, dtype):
        return self.inner.init(key, input_shape, dtype)

    def apply(self, p, x, train=False, key=None):      # forward only: enough for a checkpoint
        z, cache = self.inner.apply(p, x, train, key)
        return self.c * self.act.fn(z), cache


def test_register_layer_lets_a_users_layer_be_saved_and_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setattr(fn.descriptions, "LAYERS", dict(fn.descriptions.LAYERS))  # until the end
    net = fn.model.network(L.serial(
        L.Dense(4), Mix(L.serial(L.Dense(5), Scale(0.5)), fn.math.tanh, c=2.0, mode="shift",
                        scheme=fn.model.uniform(0.1), note="x")), (3,), fn.losses.mse)
    params = fn.model.init(jax.random.key(0), net)
    with pytest.raises(InputError, match="register_layer"):
        fio.save(tmp_path / "u.npz", params, net)             # Mix (and Scale) unknown yet
    assert fio.register_layer(Mix) is Mix and fio.register_layer(Scale) is Scale
    p = fio.save(tmp_path / "u.npz", params, net)
    back = fio.load_network(p)
    assert back == net and hash(back) == hash(net)
    assert fio.info(p)["net"]["layer"]["layers"][1] == {
        "class": "Mix", "act": {"activation": "tanh"}, "c": 2.0, "mode": "shift",
        "axes": [0, [1, 2]], "scheme": {"scheme": "uniform", "a": 0.1}, "note": "x",
        "inner": {"class": "Serial", "layers": [
            {"class": "Dense", "n": 5, "act": None, "init": {"scheme": "glorot"}},
            {"class": "Scale", "c": 0.5}]}}
    x = jax.random.normal(jax.random.key(1), (2, 3))
    assert np.array_equal(fn.model.forward(back, fio.load(p), x), fn.model.forward(net, params, x))
    # a program that has not registered it cannot rebuild it, and says how to
    del fn.descriptions.LAYERS["Mix"]
    with pytest.raises(fio.CheckpointError, match=r"register_layer\(Mix\)"):
        fio.load_network(p)


def test_register_layer_refuses_what_it_could_not_rebuild(tmp_path, monkeypatch):
    monkeypatch.setattr(fn.descriptions, "LAYERS", dict(fn.descriptions.LAYERS))
    with pytest.raises(InputTypeError, match="layer class"):
        fio.register_layer(Ones)

    @dataclass                                               # not frozen: not hashable by value
    class Loose(L.Layer):
        c: float
    with pytest.raises(InputError, match="frozen dataclass"):
        fio.register_layer(Loose)

    @dataclass(frozen=True)
    class Dense(L.Layer):                                    # another class with a taken name
        n: int
    with pytest.raises(InputError, match="'Dense' is taken"):
        fio.register_layer(Dense)

    @dataclass(frozen=True, init=False)
    class Halve(L.Layer):                                    # its constructor renames its field
        k: float

        def __init__(self, divisor):
            object.__setattr__(self, "k", 1 / divisor)

        def shape(self, input_shape):
            return input_shape

        def apply(self, p, x, train=False, key=None):
            return self.k * x, None

        def vjp(self, p, cache, g):
            return (), self.k * g
    fio.register_layer(Halve)
    net = fn.model.network(L.serial(Halve(2), L.Dense(2)), (3,), fn.losses.mse)
    with pytest.raises(InputError, match=r"net.layer.layers\[0\].*keyword arguments"):
        fio.save(tmp_path / "h.npz", fn.model.init(jax.random.key(0), net), net)

    @dataclass(frozen=True, init=False)
    class Root(L.Layer):                                     # keeps sqrt(k), not k: rebuilt,
        k: float                                             # it would change

        def __init__(self, k):
            object.__setattr__(self, "k", k ** 0.5)

        def shape(self, input_shape):
            return input_shape

        def apply(self, p, x, train=False, key=None):
            return self.k * x, None

        def vjp(self, p, cache, g):
            return (), self.k * g
    fio.register_layer(Root)
    net = fn.model.network(L.serial(L.Dense(2), Root(4.0)), (3,), fn.losses.mse)
    with pytest.raises(InputError, match=r"net.layer.layers\[1\].*not equal to it"):
        fio.save(tmp_path / "r.npz", fn.model.init(jax.random.key(0), net), net)
    assert os.listdir(tmp_path) == []


def test_params_that_do_not_fit_the_network_are_refused_naming_the_leaf(tmp_path, cnn):
    params = fn.model.init(jax.random.key(0), cnn)
    other = fn.model.network(L.serial(*(L.Conv2D(4, 5, stride=(2, 1), padding=((1, 1), (0, 1)))
                                         if i == 1 else layer
                                         for i, layer in enumerate(cnn.layer.layers))),
                             cnn.input_shape, cnn.loss)               # a 5x5 kernel, not 3x3
    with pytest.raises(InputError) as e:
        fio.save(tmp_path / "c.npz", params, other)
    assert "[1]['w'] (layer 1, Conv2D(4, 5x5" in str(e.value)
    assert "is [3, 3, 1, 4], not [..., 5, 5, 1, 4]" in str(e.value)
    bad_bn = params[:3] + ({**params[3], "gamma": jnp.ones(5)},) + params[4:]
    with pytest.raises(InputError, match=r"\[3\]\['gamma'\] \(layer 3, BatchNorm\) is \[5\]"):
        fio.save(tmp_path / "c.npz", bad_bn, cnn)
    with pytest.raises(InputError, match=r"\[5\]\[0\]\['w'\] \(layer 5, Residual.*missing"):
        fio.save(tmp_path / "c.npz", params[:5] + ((),) + params[6:], cnn)
    assert os.listdir(tmp_path) == []
    ensemble = jax.tree.map(lambda a: jnp.stack([a, -a]), params)     # leading axes allowed
    p = fio.save(tmp_path / "e.npz", ensemble, cnn)
    assert_bitwise(fio.load(p), ensemble)
    assert fio.load_network(p) == cnn


def test_a_damaged_network_description_is_refused_naming_the_place(tmp_path, cnn):
    p = fio.save(tmp_path / "cnn.npz", fn.model.init(jax.random.key(0), cnn), cnn)
    head = fio.info(p)

    def load_with(net, name):
        blob = np.frombuffer(json.dumps({**head, "net": net}).encode(), np.uint8)
        bad = rewrite(p, tmp_path / name, {"__funcnn__.npy": npy_bytes(blob)})
        with pytest.raises(fio.CheckpointError) as e:
            fio.load_network(bad)
        return str(e.value)
    assert "'hinge'" in load_with({**head["net"], "loss": "hinge"}, "l.npz")
    layers = [dict(d) for d in head["net"]["layer"]["layers"]]
    layers[9] = {"class": "Serial", "layers": [{"class": "Dense", "n": -1}]}
    message = load_with({**head["net"], "layer": {"class": "Serial", "layers": layers}}, "d.npz")
    assert "net.layer.layers[9].layers[0]" in message and "Dense(n)" in message
    layers[9] = {"class": "Act", "act": {"activation": "swish"}}
    message = load_with({**head["net"], "layer": {"class": "Serial", "layers": layers}}, "a.npz")
    assert "net.layer.layers[9].act" in message and "'swish'" in message
