"""The NumPy rival of sections 1 and 5: seed 2's training loops (backprop by hand), run in a
worker process of their own.

The worker starts with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset, so OpenBLAS picks its own
kernel, and sets OpenBLAS's thread count per request (through ctypes, as threadpoolctl does).
It loads Fashion-MNIST as the seed does (pixels / 255, in float32 or float64), times its own
loop and answers in JSON, one line per request: `NumpyWorker()("minibatch", ...)` from the
benchmark's process; this file run as a script is the worker's side (stdin to stdout).
"""
from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import time
import traceback

import numpy as np

import funcnn as fn

BLAS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")   # unset for the worker


# --- seed 2's loops ---------------------------------------------------------------------------

def seed_init(d_in=784, d_hidden=128, d_out=10):
    """Seed 2's init, `np.random.seed(0)` then randn / sqrt(fan_in), in its [d_out, d_in] layout
    (float64). A RandomState of its own gives the same draws without the global state."""
    state = np.random.RandomState(0)
    w1 = state.randn(d_hidden, d_in) / np.sqrt(d_in)
    w2 = state.randn(d_out, d_hidden) / np.sqrt(d_hidden)
    return w1, np.zeros(d_hidden), w2, np.zeros(d_out)


def numpy_minibatch(x, labels, y, params, epochs, batch_size, lr, seed):
    """Seed 2's loop on mini-batches (no L2): forward, backprop by hand, update, per batch.
    params: (w1 [h, d_in], b1, w2 [k, h], b2), updated in place. Returns (loss, accuracy) of
    the last epoch, means over its batches before each step."""
    w1, b1, w2, b2 = params
    order_rng = np.random.default_rng(seed)
    n = len(x)
    for _ in range(epochs):
        order = order_rng.permutation(n)                      # a new shuffle every epoch
        loss_sum, correct = 0.0, 0
        for start in range(0, n, batch_size):
            rows = order[start:start + batch_size]
            X, Y, m = x[rows], y[rows], len(rows)
            h = np.maximum(0, X @ w1.T + b1)                  # relu(X w1^T + b1)
            z = h @ w2.T + b2
            e = np.exp(z - z.max(axis=1, keepdims=True))
            f = e / e.sum(axis=1, keepdims=True)              # softmax
            d_out = (f - Y) / m                               # dL/dz, mean over the batch
            d_h = (h > 0) * (d_out @ w2)
            w2 -= lr * (d_out.T @ h)
            b2 -= lr * d_out.sum(axis=0)
            w1 -= lr * (d_h.T @ X)
            b1 -= lr * d_h.sum(axis=0)
            loss_sum += -np.log(f[np.arange(m), labels[rows]] + 1e-8).sum()
            correct += int((z.argmax(axis=1) == labels[rows]).sum())
    return loss_sum / n, correct / n


def numpy_seed(X, Y, X_val, Y_val, params, epochs, lr=0.01, reg=0.001):
    """Seed 2's `train`, as written (full batch, L2 on the weights, the validation loss every
    epoch). Returns the per-epoch (train losses, validation losses)."""
    w1, b1, w2, b2 = params
    relu = lambda v: np.maximum(0, v)

    def softmax(v):
        e = np.exp(v - np.max(v, axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    losses, val_losses = [], []
    for _ in range(epochs):
        h = relu(X @ w1.T + b1)
        f = softmax(h @ w2.T + b2)
        d_out = f - Y
        d_h = (h > 0) * (d_out @ w2)
        Dw2 = d_out.T @ h / len(X) + reg * w2
        Db2 = d_out.mean(axis=0)
        Dw1 = d_h.T @ X / len(X) + reg * w1
        Db1 = d_h.mean(axis=0)
        w1 -= lr * Dw1
        b1 -= lr * Db1
        w2 -= lr * Dw2
        b2 -= lr * Db2
        losses.append(float(-np.mean(np.sum(Y * np.log(f + 1e-8), axis=1))))
        val_pred = softmax(relu(X_val @ w1.T + b1) @ w2.T + b2)
        val_losses.append(float(-np.mean(np.sum(Y_val * np.log(val_pred + 1e-8), axis=1))))
    return losses, val_losses


# --- the BLAS underneath: which one, which kernel, how many threads ---------------------------

def _openblas():
    """(library path, {name: ctypes function}) of the OpenBLAS this NumPy loaded, or None."""
    with open("/proc/self/maps") as maps:
        libs = sorted({line.split()[-1] for line in maps if "openblas" in line.lower()})
    for path in libs:
        lib = ctypes.CDLL(path)
        for prefix, suffix in (("scipy_", "64_"), ("scipy_", ""), ("", "64_"), ("", "")):
            names = {what: f"{prefix}openblas_{what}{suffix}"
                     for what in ("get_corename", "get_config", "set_num_threads",
                                  "get_num_threads")}
            if all(hasattr(lib, name) for name in names.values()):
                found = {what: getattr(lib, name) for what, name in names.items()}
                found["get_corename"].restype = found["get_config"].restype = ctypes.c_char_p
                return path, found
    return None


def set_blas_threads(threads: int) -> None:
    """OpenBLAS's thread count for the next calls (what threadpoolctl's limit does)."""
    found = _openblas()
    if found is None:
        raise RuntimeError("cannot set the BLAS thread count: this NumPy has no OpenBLAS")
    found[1]["set_num_threads"](threads)


def blas_info() -> dict:
    """Which BLAS this NumPy runs, and which kernel it picked (threadpoolctl if installed,
    else OpenBLAS asked directly through ctypes), with the environment it saw."""
    info = {"numpy": np.__version__, "env": {k: os.environ.get(k) for k in BLAS_ENV}}
    try:
        import threadpoolctl
        info["threadpoolctl"] = [{k: d.get(k) for k in ("internal_api", "version",
                                                       "architecture", "num_threads")}
                                 for d in threadpoolctl.threadpool_info()]
    except ImportError:
        pass
    found = _openblas()
    if found is not None:
        path, f = found
        info["openblas"] = {"library": os.path.basename(path),
                            "kernel": f["get_corename"]().decode(),
                            "config": f["get_config"]().decode(),
                            "threads": f["get_num_threads"]()}
    elif "threadpoolctl" not in info:
        info["show_config"] = str(np.show_config(mode="dicts").get("Build Dependencies", {}))
    return info


def blas_line(info) -> str:
    """`blas_info`'s answer in one line, for the notes and the header of RESULTS.md."""
    if "threadpoolctl" in info:
        return "; ".join(f"{d['internal_api']} {d['version']}, kernel {d['architecture']}, "
                         f"{d['num_threads']} threads" for d in info["threadpoolctl"])
    if "openblas" in info:
        o = info["openblas"]
        return (f"{o['config']} (kernel {o['kernel']}, {o['threads']} threads by default; "
                "asked through ctypes)")
    return info.get("show_config", "unknown")


# --- the worker process and the parent's handle on it -----------------------------------------

class _WorkerData:
    """The worker's Fashion-MNIST, loaded once: u8 pixels, labels, and float copies by dtype."""

    def __init__(self):
        x_train, y_train, x_test, y_test = fn.sources.load_fashion_mnist()
        self.u8 = {"train": x_train.reshape(len(x_train), -1),      # u8[n, 784]
                   "test": x_test.reshape(len(x_test), -1)}
        self.labels = {"train": y_train.astype(np.int64), "test": y_test.astype(np.int64)}
        self.cache = {}

    def x(self, part, dtype):
        key = (part, dtype)
        if key not in self.cache:                             # pixels / 255, as the seed does
            self.cache[key] = self.u8[part].astype(dtype) / np.asarray(255, dtype)
        return self.cache[key]

    def y(self, part, dtype):
        return np.eye(10, dtype=dtype)[self.labels[part]]     # the seed's one_hot


def _op_minibatch(data, params_path, n_train, n_test, epochs, batch_size, lr, seed, threads):
    set_blas_threads(threads)
    with np.load(params_path) as f:                          # funcnn's layout: w [d_in, d_out]
        params = tuple(np.ascontiguousarray(f[k].T if k.startswith("w") else f[k], np.float32)
                       for k in ("w1", "b1", "w2", "b2"))
    x, y = data.x("train", np.float32)[:n_train], data.y("train", np.float32)[:n_train]
    labels = data.labels["train"][:n_train]
    start = time.perf_counter()
    loss, accuracy = numpy_minibatch(x, labels, y, params, epochs, batch_size, lr, seed)
    seconds = time.perf_counter() - start
    w1, b1, w2, b2 = params
    z = np.maximum(0, data.x("test", np.float32)[:n_test] @ w1.T + b1) @ w2.T + b2
    test_accuracy = float((z.argmax(axis=1) == data.labels["test"][:n_test]).mean())
    return {"seconds": seconds, "train_loss": float(loss), "train_accuracy": accuracy,
            "test_accuracy": test_accuracy}


def _op_seed(data, dtype, n_train, n_val, epochs, threads):
    set_blas_threads(threads)
    dtype = np.dtype(dtype)
    X, Y = data.x("train", dtype), data.y("train", dtype)
    params = tuple(v.astype(dtype) for v in seed_init())
    start = time.perf_counter()
    losses, val_losses = numpy_seed(X[:n_train], Y[:n_train], X[50_000:50_000 + n_val],
                                    Y[50_000:50_000 + n_val], params, epochs)
    return {"seconds": time.perf_counter() - start, "train_loss": losses,
            "val_loss": val_losses}


def worker() -> None:
    """The worker's loop: one JSON request a line on stdin, one JSON answer a line on stdout."""
    out, sys.stdout = sys.stdout, sys.stderr                  # a stray print cannot break it
    ops = {"info": lambda data: blas_info(), "minibatch": _op_minibatch, "seed": _op_seed}
    data = None
    for line in sys.stdin:
        request = json.loads(line)
        try:
            if data is None and request["op"] != "info":
                data = _WorkerData()
            answer = ops[request.pop("op")](data, **request)
        except Exception:
            answer = {"error": traceback.format_exc()}
        out.write(json.dumps(answer) + "\n")
        out.flush()


class NumpyWorker:
    """The parent's handle on the worker process."""

    def __init__(self):
        env = {k: v for k, v in os.environ.items() if k not in BLAS_ENV}
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env=env)

    def __call__(self, op, **request):
        self.proc.stdin.write(json.dumps({"op": op, **request}) + "\n")
        self.proc.stdin.flush()
        answer = json.loads(self.proc.stdout.readline() or '{"error": "the worker died"}')
        if "error" in answer:
            raise RuntimeError(f"NumPy worker, {op}:\n{answer['error']}")
        return answer

    def runner(self, op, **request):
        """A runner for `interleave`: one request, which the worker times itself; the answer
        on `runner.last`."""
        def run():
            run.last = self(op, **request)
            return run.last["seconds"]
        return run

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


if __name__ == "__main__":
    worker()
