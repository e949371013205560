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
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnn as fn
from funcnn import io as fio
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
