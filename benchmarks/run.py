"""Every benchmark of issue 5 in one command; the tables go to `benchmarks/RESULTS.md`.

    python benchmarks/run.py            # everything (about six minutes); writes RESULTS.md
    python benchmarks/run.py --quick    # smoke run (CI, half a minute): small data, one repeat;
                                        # checks that every implementation learns, no timing
    python benchmarks/run.py --only ensembles   # one section (repeatable); writes no file
                                        # (roofline needs epoch_speed in the same run)

1. Fashion-MNIST, 784 -> 128 (ReLU) -> 10, softmax cross-entropy, SGD lr 0.1, batch 128, a new
   shuffle every epoch, float32, from the same initial params: seconds per epoch for funcnn
   `fit` (also called inside `jax.jit`, which skips its per-call checks), the same model
   trained with `jax.grad` in a `lax.scan` (the autodiff reference, fit's data handling),
   PyTorch eager (a plain randperm-and-slice loop) and a seed-2 style NumPy loop (backprop by
   hand, mini-batches), these two with 1 thread and with every core. Then the float32 matmul
   rate at the step's matmul shapes and at a large square one (the roofline), interleaved
   with fit epochs.
2. How the cost grows: hidden width x batch size for funcnn and PyTorch (a fixed number of
   steps each); data-set size for funcnn (time per epoch, and compile time, which must not grow).
3. `python -m funcnn` (the Clojure run), in fresh processes: end to end, and split into import,
   compile, data + init, train, picture (`cli_time.py`'s child). Cold: an empty compilation
   cache; warm: the same cache again.
4. Ensembles: 1, 16 and 256 Clojure networks at once with `fit_many` (params from
   `jax.vmap(init)`); the second call is timed, the first one's compile time is reported.
5. Seed 2 as written: full batch (50,000 images), L2 0.001, lr 0.01, with the validation loss
   every epoch: funcnn `fit` vs the NumPy original, from the same initial params.
6. GPU, where jax sees one (`pip install ".[cuda12]"`): the same `fit`, unchanged, at batch
   128 and 1024 (seconds per epoch), its share of a large square matmul's rate on the GPU,
   and its losses and params against the CPU's from the same key. Without a GPU the section
   says so; `--quick` then runs it with the CPU standing in, to check the code path.
7. CNNs (`cnn.py`): a training step of a small CNN and of the fashion-cnn example's network,
   funcnn fit vs jax.grad of its own forward, a lax.conv + jax.grad model, PyTorch eager and
   torch.compile; then evaluating the test images, fn.model.forward vs PyTorch's.

How: one process, with the NumPy loops in a worker process (started with OPENBLAS_CORETYPE and
OPENBLAS_L2_SIZE unset, so OpenBLAS picks its own kernel) and the CLI in fresh processes. In
every repeat each implementation runs once, in a shuffled order (each call 0.3 s after the
last where multi-thread rivals run: their idle threads spin); times are given as
`median [min]` over the repeats, ratios as `median of the per-repeat ratios [ratio of the
mins]` (a pair ran in the same repeat, seconds apart, under the same load: this machine is
shared and noisy).
Compile time is XLA's (`/jax/core/compile/backend_compile_duration`) plus tracing and
lowering, from `jax.monitoring`.
"""
from __future__ import annotations

import argparse
import ctypes
import datetime
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import funcnn as fn

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "RESULTS.md")
BLAS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")   # unset for the NumPy worker
CORES = len(os.sched_getaffinity(0))
CHANCE = 0.1                                             # Fashion-MNIST: 10 balanced classes

# what each mode runs: repeats, data sizes, epochs, the growth grid
PLANS = {
    "full": dict(repeats=7, n_train=60_000, n_test=10_000, roof_steps=200, square=2048,
                 widths=(128, 512, 2048), batches=(32, 128, 512), growth_flops=1.5e10,
                 growth_steps=(10, 400), growth_repeats=3, sizes=(6_000, 60_000),
                 cli_repeats=2, members=(1, 16, 256), member_repeats=3,
                 seed_rows=50_000, seed_val=10_000, seed_epochs=5, seed_repeats=3,
                 gpu_batches=(128, 1024), gpu_square=8192, gpu_square_steps=20,
                 cnn_batches=(32, 128, 512), cnn_steps=40, cnn_flops=8e9, cnn_repeats=3,
                 cnn_compile=True, cnn_eval_rows=10_000, cnn_eval_chunk=500,
                 cnn_eval_repeats=3),
    "quick": dict(repeats=1, n_train=6_000, n_test=1_000, roof_steps=10, square=256,
                  widths=(128,), batches=(128,), growth_flops=1e8, growth_steps=(5, 10),
                  growth_repeats=1, sizes=(600, 6_000), cli_repeats=0, members=(1, 16),
                  member_repeats=1, seed_rows=2_000, seed_val=500, seed_epochs=2,
                  seed_repeats=1, gpu_batches=(128, 1024), gpu_square=256, gpu_square_steps=2,
                  cnn_batches=(128,), cnn_steps=3, cnn_flops=8e9, cnn_repeats=1,
                  cnn_compile=False, cnn_eval_rows=500, cnn_eval_chunk=500,
                  cnn_eval_repeats=1),
}


SECTIONS = ("epoch_speed", "roofline", "growth", "dataset_size", "cli", "ensembles",
            "seed_full_batch", "gpu", "cnn")   # Bench's methods, run in this order
                                        # (roofline reuses epoch_speed's fit runner)

# --- timing helpers ----------------------------------------------------------------------------

def med(v):
    return statistics.median(v)


SETTLE_S = 0.3   # pause before each call where multi-thread rivals run (see interleave)


def interleave(runners: dict, repeats: int, settle: float = 0.0) -> dict[str, list[float]]:
    """Call every runner (a function returning seconds) once per repeat, in a new shuffled
    order each repeat, `settle` seconds after the previous call. Sections with multi-thread
    rivals settle: after a multi-thread BLAS or PyTorch call its idle threads spin for up to
    ~0.2 s and slow whatever runs next, and a rotating order always puts the same runner next
    (funcnn fit after the 2-thread NumPy loop: 15% slower). The others do not: a short call
    made after a pause runs colder."""
    names = list(runners)
    times = {name: [] for name in names}
    order = np.random.default_rng(0)                  # fixed: the same schedule every run
    for _ in range(repeats):
        for i in order.permutation(len(names)):
            time.sleep(settle)
            times[names[i]].append(runners[names[i]]())
    return times


def timed(call):
    """`call` as a runner for `interleave`: each run waits for the result, keeps it on
    `run.last` (for the accuracy check) and returns the seconds it took."""
    def run():
        start = time.perf_counter()
        run.last = jax.block_until_ready(call())
        return time.perf_counter() - start
    return run


def pair_ratio(slow: list[float], fast: list[float]) -> float:
    """Median of the per-repeat ratios slow / fast (each pair ran in the same repeat)."""
    return med([s / f for s, f in zip(slow, fast, strict=True)])


def fmt_ratio(slow: list[float], fast: list[float]) -> str:
    """`median of per-repeat ratios [ratio of the mins]`: the second is the two at their best,
    nearest to an idle machine."""
    return f"{pair_ratio(slow, fast):.2f}x [{min(slow) / min(fast):.2f}x]"


def fmt_s(times: list[float], scale: float = 1.0, digits: int = 3) -> str:
    """`median [min]` of times, multiplied by `scale`."""
    return f"{med(times) * scale:.{digits}f} [{min(times) * scale:.{digits}f}]"


def mlp_flops(sizes, samples: int = 1) -> int:
    """Matmul flops of one training step on `samples` rows: forward x W, backward x^T g for
    every layer, g W^T for every layer but the first (nothing needs dL/dx of the input)."""
    pairs = list(zip(sizes[:-1], sizes[1:]))
    fwd = sum(2 * d_in * d_out for d_in, d_out in pairs)
    bwd = fwd + sum(2 * d_in * d_out for d_in, d_out in pairs[1:])
    return (fwd + bwd) * samples


class CompileClock:
    """Seconds jax spent compiling (XLA backend; and tracing + lowering), read as deltas."""
    EVENTS = {"/jax/core/compile/backend_compile_duration": "xla",
              "/jax/core/compile/jaxpr_trace_duration": "trace",
              "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower"}

    def __init__(self):
        self.total = {"xla": 0.0, "trace": 0.0, "lower": 0.0}
        jax.monitoring.register_event_duration_secs_listener(self._on_event)

    def _on_event(self, event, seconds, **kwargs):
        if event in self.EVENTS:
            self.total[self.EVENTS[event]] += seconds

    def measure(self, f):
        """Run f(); return (its result, wall s, XLA compile s, trace + lower s)."""
        before = dict(self.total)
        start = time.perf_counter()
        result = f()
        wall = time.perf_counter() - start
        xla = self.total["xla"] - before["xla"]
        rest = sum(self.total[k] - before[k] for k in ("trace", "lower"))
        return result, wall, xla, rest


# --- the NumPy side: a worker process with the BLAS environment unset --------------------------

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


class _WorkerData:
    """The worker's Fashion-MNIST, loaded once: u8 pixels, labels, and float copies by dtype."""

    def __init__(self):
        x_train, y_train, x_test, y_test = fn.idx.load_fashion_mnist()
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


def numpy_worker() -> None:
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
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__),
                                      "--numpy-worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env)

    def __call__(self, op, **request):
        self.proc.stdin.write(json.dumps({"op": op, **request}) + "\n")
        self.proc.stdin.flush()
        answer = json.loads(self.proc.stdout.readline() or '{"error": "the worker died"}')
        if "error" in answer:
            raise RuntimeError(f"NumPy worker, {op}:\n{answer['error']}")
        return answer

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


# --- the benchmark proper ----------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: small data, one repeat; checks learning, not timings")
    parser.add_argument("--out", default=None, help="where to write the Markdown results "
                        "(default: benchmarks/RESULTS.md for a full run, nowhere for --quick)")
    parser.add_argument("--only", action="append", choices=SECTIONS, metavar="SECTION",
                        help="run only this section (repeatable): " + ", ".join(SECTIONS))
    parser.add_argument("--numpy-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.numpy_worker:
        return numpy_worker()
    out = args.out or (None if args.quick or args.only else RESULTS)
    bench = Bench(PLANS["quick" if args.quick else "full"], quick=args.quick, only=args.only)
    try:
        bench.run_all()
    finally:
        bench.close()
    text = bench.markdown()
    if out:
        with open(out, "w", encoding="utf-8") as f:
            f.write(text)
        print(f"\nwrote {out}")
    failed = [name for name, ok, _ in bench.checks if not ok]
    print("\nlearning checks: " + ("all passed" if not failed else f"FAILED: {failed}"))
    return 1 if failed else 0


class Bench:
    """Runs the sections in order; keeps their tables, the learning checks and the headlines."""

    def __init__(self, plan, quick, only=None):
        self.plan, self.quick, self.only = plan, quick, only
        self.sections = []           # (title, intro, headers, rows, notes)
        self.checks = []             # (name, ok, detail): does every implementation learn?
        self.headlines = []          # (what, value, target, met or None)
        self.started = time.perf_counter()
        self.load_start = os.getloadavg()
        self.worker = NumpyWorker()  # starts now; loads its data on its first request
        self.clock = CompileClock()
        try:
            import torch
            self.torch = torch
        except ImportError:
            self.torch = None
            print("note: torch is not installed; the PyTorch rows are skipped "
                  "(pip install -e .[bench] installs torch==2.13.0)")
        self.blas = self.worker("info")
        # thread counts for PyTorch and NumPy: 1, and every core (not in --quick: on a loaded
        # machine a thread team waits for its slowest member, and one step can take 100 ms)
        self.threads = (1,) if quick or CORES == 1 else (1, CORES)

    def close(self):
        self.worker.close()

    # --- bookkeeping ---

    def check(self, name, ok, detail):
        self.checks.append((name, bool(ok), detail))
        print(f"  check {'ok  ' if ok else 'FAIL'} {name}: {detail}", flush=True)

    def section(self, title, intro, headers, rows, notes=()):
        self.sections.append((title, intro, headers, rows, list(notes)))
        print(f"\n## {title}\n" + "\n".join(_table(headers, rows)), flush=True)
        for note in notes:
            print(f"  {note}")

    def headline(self, what, value, target=None, met=None):
        self.headlines.append((what, value, target, met))

    def run_all(self):
        try:
            self.fashion = fn.data.fashion_mnist()
        except FileNotFoundError as e:
            self.fashion = None
            print(f"note: Fashion-MNIST not found, sections 1, 2, 5, 6 and 7 are skipped ({e})")
        for name in SECTIONS:
            if self.fashion is None and name not in ("cli", "ensembles"):
                continue
            if self.only and name not in self.only:
                continue
            print(f"\n[{time.perf_counter() - self.started:6.1f} s] {name}", flush=True)
            getattr(self, name)()
        self.load_end = os.getloadavg()
        self.elapsed = time.perf_counter() - self.started
        print("\n## Headlines")
        for what, value, target, met in self.headlines:
            verdict = "" if met is None else f" (target {target}: {'met' if met else 'NOT met'})"
            print(f"  {what}: {value}{verdict}")

    # --- data, networks and runners (a runner: a function timing one call; .last keeps
    # --- what the call returned, for the checks) ---

    def fashion_rows(self, n, part=0, start=0):
        full = self.fashion[part]
        return fn.data.Dataset(full.x[start:start + n], full.y[start:start + n])

    def relu_net(self, width=128, init=fn.model.he()):
        return fn.model.mlp([784, width, 10], hidden=fn.math.relu, output=fn.math.identity,
                            loss=fn.losses.softmax_cross_entropy, init=init)

    def fit_runner(self, key, net, params, train, test=None, **kw):
        """One `fit` call, waited for."""
        return timed(lambda: fn.train.fit(key, net, params, train, test, verbose=False, **kw))

    def fit_many_runner(self, keys, net, params, train, test, **kw):
        """One `fit_many` call, waited for."""
        return timed(lambda: fn.train.fit_many(keys, net, params, train, test, verbose=False,
                                               **kw))

    def jit_fit_runner(self, key, net, params, train, lr, batch_size):
        """One epoch of `fit` called inside the caller's `jax.jit`: the same compiled loop,
        without fit's per-call checks in plain Python (which see only tracers there)."""
        fit = jax.jit(lambda key, params, x, y: fn.train.fit(
            key, net, params, fn.data.Dataset(x, y), epochs=1, lr=lr, batch_size=batch_size,
            verbose=False))

        return timed(lambda: fit(key, params, train.x, train.y))

    def autodiff_runner(self, key, net, params, train, lr, batch_size):
        """One call of the autodiff reference, one epoch."""
        return timed(lambda: autodiff_fit(key, params, train, np.float32(lr), net=net, epochs=1,
                                          batch_size=batch_size))

    def torch_runner(self, params, n, batch_size, threads, lr=0.1):
        """One epoch of PyTorch eager on the first n rows, from funcnn's params."""
        torch = self.torch
        if not hasattr(self, "_torch_data"):
            train = self.fashion[0]
            self._torch_data = (torch.from_numpy(np.array(train.x)),
                                torch.from_numpy(np.array(train.y).argmax(axis=1)))
        x, labels = (v[:n] for v in self._torch_data)
        generator = torch.Generator().manual_seed(0)

        def run():
            torch.set_num_threads(threads)
            model = torch_copy(torch, params)
            start = time.perf_counter()
            torch_train(torch, model, x, labels, batch_size, lr, generator)
            run.last = model
            return time.perf_counter() - start
        return run

    def numpy_runner(self, op, **request):
        """One request to the NumPy worker, which times itself."""
        def run():
            run.last = self.worker(op, **request)
            return run.last["seconds"]
        return run

    def test_accuracy(self, name, run, net, test):
        if name.startswith("PyTorch"):
            with self.torch.no_grad():
                out = run.last(self.torch.from_numpy(np.array(test.x))).numpy()
        elif name.startswith("NumPy"):
            return run.last["test_accuracy"]
        else:
            out = fn.model.forward(net, run.last[0], test.x)
        return float(fn.metrics.accuracy(jnp.asarray(out), test.y))

    # --- section 1 ---

    def epoch_speed(self):
        plan = self.plan
        n, bs, lr = plan["n_train"], 128, 0.1
        n_many = n // 10                       # rows for the many-thread rows (see below)
        train, test = self.fashion_rows(n), self.fashion_rows(plan["n_test"], part=1)
        net = self.relu_net()
        params = fn.model.init(jax.random.key(0), net)
        k_fit = jax.random.key(1)
        runners = {"funcnn fit": self.fit_runner(k_fit, net, params, train, epochs=1, lr=lr,
                                                 batch_size=bs),
                   "funcnn fit inside jax.jit": self.jit_fit_runner(k_fit, net, params, train,
                                                                    lr, bs),
                   "jax.grad in lax.scan": self.autodiff_runner(k_fit, net, params, train,
                                                                lr, bs)}
        rows_of = {}                           # rows per timed call, where not n
        with tempfile.TemporaryDirectory() as tmp:
            params_path = os.path.join(tmp, "params.npz")
            np.savez(params_path, w1=params[0]["w"], b1=params[0]["b"], w2=params[1]["w"],
                     b2=params[1]["b"])
            for threads in self.threads:
                rows = n if threads == 1 else n_many
                label = f"{threads} thread{'s' if threads > 1 else ''}"
                if self.torch is not None:
                    runners[f"PyTorch eager, {label}"] = self.torch_runner(params, rows, bs,
                                                                           threads, lr)
                    rows_of[f"PyTorch eager, {label}"] = rows
                runners[f"NumPy loop, {label}"] = self.numpy_runner(
                    "minibatch", params_path=params_path, n_train=rows, n_test=plan["n_test"],
                    epochs=1, batch_size=bs, lr=lr, seed=0, threads=threads)
                rows_of[f"NumPy loop, {label}"] = rows
            first = {name: self.clock.measure(run)[1:] for name, run in runners.items()}
            times = interleave(runners, plan["repeats"], SETTLE_S)
        # per epoch of n rows (the many-thread rows ran n / 10 of them)
        epoch = {name: [s * n / rows_of.get(name, n) for s in t] for name, t in times.items()}

        # did each learn? and does funcnn compute what jax.grad computes?
        accuracy = {name: self.test_accuracy(name, run, net, test)
                    for name, run in runners.items()}
        for name, a in accuracy.items():
            self.check(f"1. {name} learns", a > 0.5, f"test accuracy {a:.3f} after "
                       f"{rows_of.get(name, n):,} rows (chance {CHANCE})")
        losses = [float(runners[k].last[1]["train_loss"][-1])
                  for k in ("funcnn fit", "jax.grad in lax.scan")]
        gap = abs(losses[0] - losses[1])
        self.check("1. funcnn and jax.grad train alike", gap < 1e-3 * losses[0],
                   f"epoch train losses {losses[0]:.5f} and {losses[1]:.5f} (same shuffles)")

        flops = mlp_flops(net.sizes, n)
        base = epoch["funcnn fit"]
        table = []
        for name, t in epoch.items():
            wall, xla, rest = first[name]
            table.append([name, fmt_s(t), f"{n / med(t):,.0f}", f"{flops / med(t) / 1e9:.1f}",
                          f"{pair_ratio(t, base):.2f}",
                          f"{wall:.2f} ({xla:.2f} + {rest:.2f})" if xla else f"{wall:.2f}",
                          f"{accuracy[name]:.3f}"])
        self.s1 = dict(epoch=base, n=n, bs=bs, runner=runners["funcnn fit"])
        notes = [f"GFLOP/s: the step's matmul flops ({mlp_flops(net.sizes):,} per sample: "
                 "forward, x^T g, and g W^T for all but the first layer) over the median time.",
                 "funcnn fit's time includes its per-call input checks in Python (shapes, "
                 "types; the NumPy pass for NaN/Inf and one-hot rows ran on the first call "
                 "only, as these are the same JAX arrays); the autodiff reference has none.",
                 "Every funcnn row and the autodiff reference shuffle with fn.data.shuffle "
                 "(a Feistel network past 1,024 rows: 0.6 ms at 60,000, where a sort took "
                 "17 ms); PyTorch uses torch.randperm, NumPy Generator.permutation.",
                 "The PyTorch loop accumulates the loss and the correct count per batch, as "
                 "fit does. NumPy: " + blas_line(self.blas) + "."]
        if len(self.threads) > 1:
            notes.append(f"The {CORES}-thread rows ran {n_many:,} rows per timed call (their "
                         "s / epoch is scaled up): on this shared machine a thread team waits "
                         "for its slowest member, and a whole epoch could take minutes.")
        self.section(
            f"1. Fashion-MNIST 784-128-10, batch {bs}: one epoch",
            f"{n:,} training rows, one epoch per timed call ({-(-n // bs)} steps of SGD, lr "
            f"{lr}, a new shuffle), every call from the same He-initialised params. "
            f"{plan['repeats']} repeats, interleaved. Test accuracy on {plan['n_test']:,} "
            "test images after the call.",
            ["implementation", "s / epoch: median [min]", "samples/s", "GFLOP/s",
             "time vs funcnn", "first call s (XLA compile + trace/lower)", "test accuracy"],
            table, notes)
        for rival, target in (("PyTorch eager", 2.0), ("jax.grad", 1.0), ("NumPy loop", None)):
            names = [k for k in epoch if k.startswith(rival)]
            if names:
                best = min(names, key=lambda k: med(epoch[k]))
                r = pair_ratio(epoch[best], base)
                self.headline(f"funcnn fit vs {best}{' (its fastest)' if len(names) > 1 else ''}"
                              ", epoch throughput", fmt_ratio(epoch[best], base),
                              target and f">= {target:.1f}x", target and r >= target)
        loop = epoch["funcnn fit inside jax.jit"]
        self.headline("funcnn's compiled loop (fit inside jax.jit: no per-call checks) vs "
                      "jax.grad in lax.scan", fmt_ratio(epoch["jax.grad in lax.scan"], loop),
                      ">= 1.0x", pair_ratio(epoch["jax.grad in lax.scan"], loop) >= 1.0)

    # --- section 1, the roofline ---

    def roofline(self):
        plan, bs, sizes = self.plan, self.s1["bs"], (784, 128, 10)
        s = plan["square"]
        square = f"[{s},{s}] x [{s},{s}]"
        shapes = step_matmuls(sizes, bs)[:1 if self.quick else None]   # quick: compile less
        shapes += [(square, s, s, s, False, False)]
        runners = {label: matmul_timer(m, k, n, lhs_t, rhs_t,
                                       1 if label == square else plan["roof_steps"])
                   for label, m, k, n, lhs_t, rhs_t in shapes}
        for run in runners.values():
            run()                                             # compile
        runners["funcnn fit"] = self.s1["runner"]             # again, under the same load
        times = interleave(runners, max(3, plan["repeats"]))
        flops = {label: 2 * m * k * n for label, m, k, n, *_ in shapes}
        rows = [[label, f"{flops[label] / 1e6:,.1f}", fmt_s(times[label], 1e6, 1),
                 f"{flops[label] / med(times[label]) / 1e9:.1f}",
                 f"{flops[label] / min(times[label]) / 1e9:.1f}"] for label, *_ in shapes]
        # per repeat: the step's matmuls alone (at that repeat's rates) vs funcnn's step
        steps = -(-self.s1["n"] // bs)
        step_s = [t / steps for t in times["funcnn fit"]]
        bound = [sum(times[label][r] for label, *_ in shapes[:-1]) for r in range(len(step_s))]
        share = med([b / t for b, t in zip(bound, step_s, strict=True)])
        achieved = [mlp_flops(sizes, bs) / t for t in step_s]
        of_square = med([a * t / flops[square] for a, t in zip(achieved, times[square],
                                                                strict=True)])
        self.section(
            "1b. The float32 matmul roofline of this machine (jnp.dot on XLA's CPU backend)",
            f"Each matmul of the batch-{bs} step (x^T g reads its left side transposed, as "
            f"the backward pass does) {plan['roof_steps']} times in a jitted fori_loop over 4 "
            "distinct left sides (each product copies its left side in, as the step gathers "
            "its batch), and one large square product; interleaved with funcnn fit "
            f"epochs, so that each repeat compares the two under the same load. "
            f"{max(3, plan['repeats'])} repeats.",
            ["matmul", "MFLOP", "us each: median [min]", "GFLOP/s median", "GFLOP/s best"],
            rows,
            [f"funcnn fit: {med(step_s) * 1e3:.3f} ms per step (median; best "
             f"{min(step_s) * 1e3:.3f}), {med(achieved) / 1e9:.1f} GFLOP/s of matmul work "
             f"(best {max(achieved) / 1e9:.1f}). The step's matmuls alone take "
             f"{med(bound) * 1e3:.3f} ms: funcnn runs at {share:.0%} of the roofline at these "
             f"shapes (median over repeats of matmuls-alone / step time), and at "
             f"{of_square:.0%} of the large square product's rate."])
        self.headline("funcnn's share of the float32 matmul roofline: at the step's own shapes; "
                      "of a large square product", f"{share:.0%}; {of_square:.0%}")

    # --- section 2 ---

    def growth(self):
        plan, rows = self.plan, []
        lo, hi = plan["growth_steps"]
        for width in plan["widths"]:
            net = self.relu_net(width)
            params = fn.model.init(jax.random.key(0), net)
            for bs in plan["batches"]:
                step_flops = mlp_flops(net.sizes, bs)
                steps = int(min(hi, plan["n_train"] // bs, max(lo, plan["growth_flops"]
                                                                // step_flops)))
                runners = {"funcnn": self.fit_runner(jax.random.key(1), net, params,
                                                     self.fashion_rows(steps * bs), epochs=1,
                                                     lr=0.1, batch_size=bs)}
                steps_of = {"funcnn": steps}
                for threads in self.threads if self.torch is not None else ():
                    name = f"PyTorch, {threads} thread{'s' if threads > 1 else ''}"
                    steps_of[name] = steps if threads == 1 else min(steps, 10)
                    runners[name] = self.torch_runner(params, steps_of[name] * bs, bs, threads)
                first = {name: self.clock.measure(run)[1:] for name, run in runners.items()}
                times = interleave(runners, plan["growth_repeats"], SETTLE_S)
                per_step = {name: [s / steps_of[name] for s in t] for name, t in times.items()}
                loss = float(runners["funcnn"].last[1]["train_loss"][-1])
                if not np.isfinite(loss) or loss > 2.5:
                    self.check(f"2. funcnn width {width} batch {bs} learns", False,
                               f"train loss {loss}")
                for name, t in per_step.items():
                    rows.append([name, width, bs, steps_of[name], fmt_s(t, 1e3, 3),
                                 f"{bs / med(t):,.0f}", f"{step_flops / med(t) / 1e9:.1f}",
                                 f"{pair_ratio(t, per_step['funcnn']):.2f}",
                                 "{:.2f} + {:.2f}".format(*first[name][1:])
                                 if name == "funcnn" else ""])
        self.section(
            "2a. Cost growth: hidden width x batch size (784-width-10, one fit epoch over "
            "steps x batch rows)",
            f"About {plan['growth_flops'] / 1e9:g} GFLOP per timed call ({lo} to {hi} steps; the "
            "many-thread PyTorch rows at most 10). "
            f"{plan['growth_repeats']} repeats, interleaved.",
            ["implementation", "width", "batch", "steps", "ms / step: median [min]",
             "samples/s", "GFLOP/s", "time vs funcnn", "funcnn compile s (XLA + trace/lower)"],
            rows)

    def dataset_size(self):
        plan = self.plan
        net = self.relu_net()
        params = fn.model.init(jax.random.key(0), net)
        runners, first = {}, {}
        for n in plan["sizes"]:
            runners[n] = self.fit_runner(jax.random.key(1), net, params, self.fashion_rows(n),
                                         epochs=1, lr=0.1, batch_size=128)
            jax.clear_caches()                                # so this size compiles afresh
            first[n] = self.clock.measure(runners[n])[1:]
        times = interleave(runners, max(3, plan["repeats"]))
        small, big = plan["sizes"][0], plan["sizes"][-1]
        rows = [[f"{n:,}", fmt_s(t), f"{n / med(t):,.0f}", f"{n / small:.0f}",
                 f"{med(t) / med(times[small]):.2f}", f"{first[n][1]:.2f}",
                 f"{first[n][2]:.2f}"] for n, t in times.items()]
        self.section(
            "2b. Cost growth: data-set size (funcnn fit, 784-128-10, batch 128, one epoch)",
            "Each size compiled afresh (`jax.clear_caches()` first), then timed. "
            f"{max(3, plan['repeats'])} repeats, interleaved.",
            ["rows", "s / epoch: median [min]", "samples/s", "rows vs smallest",
             "time vs smallest", "XLA compile s", "trace + lower s"], rows)
        r = first[big][1] / max(first[small][1], 1e-9)
        self.headline(f"fit's XLA compile time, {big:,} rows vs {small:,}", f"{r:.2f}x",
                      "does not grow", r < 1.5)
        r = med(times[big]) / med(times[small]) / (big / small)
        self.headline(f"fit's time per row, {big:,} rows vs {small:,}", f"{r:.2f}x",
                      "linear (~1x)", 0.67 < r < 1.5)

    # --- section 3 ---

    def cli(self):
        if HERE not in sys.path:
            sys.path.insert(0, HERE)
        import cli_time                                       # benchmarks/cli_time.py
        if self.quick:                                        # one cold run: does it learn?
            with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as out:
                wall, stdout = cli_time.run(["-m", "funcnn", "--quiet", "--out",
                                             os.path.join(out, "b.svg")], cache)
            found = re.search(r"test accuracy ([0-9.]+)", stdout)
            accuracy = float(found.group(1)) if found else float("nan")
            self.check("3. python -m funcnn learns", accuracy > 0.8,
                       f"test accuracy {accuracy:.4f} (one cold run, {wall:.1f} s)")
            return
        e2e = {"cold": [], "warm": [], "warm --quiet": []}
        split = {"cold": [], "warm": [], "warm --quiet": []}
        for _ in range(self.plan["cli_repeats"]):
            with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as out:
                svg = ["--out", os.path.join(out, "b.svg")]
                e2e["cold"].append(cli_time.run(["-m", "funcnn", *svg], cache)[0])
                e2e["warm"].append(cli_time.run(["-m", "funcnn", *svg], cache)[0])
                cli_time.run(["-m", "funcnn", "--quiet", *svg], cache)   # fill the cache
                e2e["warm --quiet"].append(cli_time.run(["-m", "funcnn", "--quiet", *svg],
                                                        cache)[0])
                split["warm --quiet"].append(cli_time.phases(cache, out, quiet=True))
            with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as out:
                split["cold"].append(cli_time.phases(cache, out))
                split["warm"].append(cli_time.phases(cache, out))

        def part(runs, phases, what):                         # what: wall, compile or run
            sums = [(sum(t[p][0] for p in phases), sum(t[p][1] for p in phases))
                    for t, _ in runs]
            return med([{"wall": w, "compile": c, "run": w - c}[what] for w, c in sums])
        lines = [("import jax, funcnn", ("import jax", "import funcnn"), "wall"),
                 ("compile (data, init, fit, picture)", ("data", "init", "fit", "picture"),
                  "compile"),
                 ("data + init, run", ("data", "init"), "run"),
                 ("train: fit, 20 epochs, run", ("fit",), "run"),
                 ("picture, run", ("picture",), "run"),
                 ("interpreter start, exit, rest", ("start, exit, rest",), "wall")]
        rows = [[label] + [f"{part(split[k], phases, what):.2f}" for k in split]
                for label, phases, what in lines]
        rows.append(["**total** (process wall)"] + [f"{med([w for _, w in split[k]]):.2f}"
                                                    for k in split])
        rows.append(["`python -m funcnn` end to end: median [min]"] +
                    [fmt_s(e2e[k], digits=2) for k in e2e])
        self.section(
            "3. The Clojure run, `python -m funcnn` (seconds)",
            "Fresh processes. Cold: an empty compilation cache (XDG_CACHE_HOME a new folder); "
            "warm: the same folder again; warm --quiet: the same with --quiet, after one "
            "--quiet run filled the cache. The split comes from cli_time.py's child, which runs "
            "the CLI's steps one phase at a time under a compile listener; end to end is the "
            f"command itself. {self.plan['cli_repeats']} repeats.",
            ["phase", "cold", "warm", "warm --quiet"], rows,
            ["`--quiet` drops the per-epoch lines, and with them fit's host callback: the "
             "persistent cache's key for a program holds its callbacks' addresses, new in "
             "every process, so without --quiet fit misses the cache and compiles every run."])
        for k in e2e:
            cache = "an empty" if k == "cold" else "a filled"
            self.headline(f"python -m funcnn{' --quiet' if 'quiet' in k else ''}, {cache} "
                          "compilation cache, end to end", fmt_s(e2e[k], digits=2) + " s",
                          "< 3 s", med(e2e[k]) < 3.0)

    # --- section 4 ---

    def ensembles(self):
        plan = self.plan
        k_data, k_split, k_init, k_fit = jax.random.split(fn.rng.key(1337), 4)
        ds = fn.data.gaussian_clusters(k_data, n_per_class=400)
        train, test = fn.data.split(k_split, ds, train_fraction=0.8)
        net = fn.model.mlp([2, 8, 2], hidden=fn.math.sigmoid, output=fn.math.sigmoid,
                           loss=fn.losses.mse, init=fn.model.uniform(0.5))
        kw = dict(epochs=20, lr=0.5, batch_size=16)
        runners = {}
        for m in plan["members"]:
            params = jax.vmap(lambda k: fn.model.init(k, net))(jax.random.split(k_init, m))
            runners[m] = self.fit_many_runner(jax.random.split(k_fit, m), net, params, train,
                                              test, **kw)
        runners["fit"] = self.fit_runner(k_fit, net, fn.model.init(k_init, net), train, test,
                                         **kw)
        shuffles = {m: timed(partial(epoch_shuffles, jax.random.split(k_fit, m),
                                     n=train.x.shape[0], batch_size=kw["batch_size"],
                                     epochs=kw["epochs"]))
                    for m in plan["members"]}                 # the shuffles alone, per m
        first = {name: self.clock.measure(run)[1:] for name, run in runners.items()}
        for run in shuffles.values():
            run()                                             # compile
        times = interleave({**runners, **{("shuffles", m): r for m, r in shuffles.items()}},
                           plan["member_repeats"])
        shuffle_ms = {m: med(times.pop(("shuffles", m))) * 1e3 for m in plan["members"]}
        one = times[plan["members"][0]]
        rows = []
        for name, t in times.items():
            accuracy = np.asarray(runners[name].last[1]["test_accuracy"])[..., -1].mean()
            label = "fit, one network" if name == "fit" else f"fit_many, {name} networks"
            self.check(f"4. {label} learns", accuracy > 0.8, f"mean test accuracy {accuracy:.3f}")
            rows.append([label, fmt_s(t, 1e3, 1), f"{pair_ratio(t, one):.2f}",
                         f"{med(t) * 1e3 / (1 if name == 'fit' else name):.3f}",
                         f"{first[name][1]:.2f}", f"{first[name][2]:.2f}", f"{accuracy:.3f}"])
        self.section(
            "4. Ensembles: Clojure networks trained at once (2-8-2 sigmoid, MSE, 640 points, "
            "batch 16, 20 epochs)",
            "`fit_many(jax.random.split(key, m), net, jax.vmap(init)(keys), ...)`, the second "
            f"call timed; {plan['member_repeats']} repeats, interleaved.",
            ["run", "ms: median [min]", f"time vs {plan['members'][0]} network",
             "ms per network", "XLA compile s", "trace + lower s", "mean test accuracy"],
            rows,
            ["Of that, the per-epoch shuffles alone (each network's own sort of its rows, "
             f"{kw['epochs']} epochs, timed in the same repeats): " +
             ", ".join(f"{shuffle_ms[m]:.1f} ms for {m}" for m in plan["members"]) +
             ". The rest grows with m too: every step's gather and matmuls are batched over "
             "the networks" + (", and for 2 x 8 weights XLA's CPU backend runs them at a few "
                               f"GFLOP/s; on {CORES} cores there is no idle width for the extra "
                               "networks to fill, as there would be on a GPU."
                               if jax.default_backend() == "cpu" else
                               f" (on {jax.devices()[0].device_kind}).")])
        big = plan["members"][-1]
        r = pair_ratio(times[big], one)
        self.headline(f"{big} networks at once vs one (fit_many)", f"{r:.1f}x", "< 3x", r < 3)

    # --- section 5 ---

    def seed_full_batch(self):
        plan = self.plan
        n, n_val, epochs = plan["seed_rows"], plan["seed_val"], plan["seed_epochs"]
        train, val = self.fashion_rows(n), self.fashion_rows(n_val, start=50_000)
        w1, b1, w2, b2 = seed_init()                          # the seed's params, [out, in]
        params = tuple({"w": jnp.asarray(w.T, jnp.float32), "b": jnp.asarray(b, jnp.float32)}
                       for w, b in ((w1, b1), (w2, b2)))
        net = self.relu_net(init=fn.model.lecun())
        opt = fn.optim.weight_decay(fn.optim.sgd(0.01), 0.001)
        runners = {"funcnn fit": self.fit_runner(jax.random.key(1), net, params, train, val,
                                                 epochs=epochs, batch_size=n, optimizer=opt)}
        seed = "NumPy float64 (the seed as written)"
        variants = (("float64", 1 if self.quick else CORES), ("float64", 1), ("float32", 1))
        for dtype, threads in dict.fromkeys(variants):        # (quick: 1 thread only)
            label = seed if dtype == "float64" else f"NumPy {dtype}"
            runners[f"{label}, {threads} thread{'s' if threads > 1 else ''}"] = \
                self.numpy_runner("seed", dtype=dtype, n_train=n, n_val=n_val, epochs=epochs,
                                  threads=threads)
        first = {name: self.clock.measure(run)[1:] for name, run in runners.items()}
        times = interleave(runners, plan["seed_repeats"], SETTLE_S)
        losses = {name: np.asarray(run.last[1]["train_loss"] if name == "funcnn fit"
                                   else run.last["train_loss"]) for name, run in runners.items()}
        reference = losses[next(k for k in runners if k.startswith(seed))]
        base = times["funcnn fit"]
        rows = []
        for name, t in times.items():
            self.check(f"5. {name} learns", losses[name][-1] < losses[name][0],
                       f"train loss {losses[name][0]:.4f} -> {losses[name][-1]:.4f} in "
                       f"{epochs} epochs")
            rows.append([name, fmt_s(t, 1 / epochs), f"{n * epochs / med(t):,.0f}",
                         f"{pair_ratio(t, base):.2f}", f"{losses[name][-1]:.5f}",
                         f"{np.abs(losses[name] - reference).max():.1e}"])
        self.section(
            "5. Seed 2's recipe: full batch, L2 0.001, SGD lr 0.01 (seconds per epoch)",
            f"{n:,} training rows in one batch, and the validation loss on {n_val:,} rows every "
            f"epoch, as the seed computes it; {epochs} epochs per timed call (the seed runs 50: "
            "every epoch is the same work), all from the seed's own initial params "
            f"(RandomState(0)). {plan['seed_repeats']} repeats, interleaved.",
            ["implementation", "s / epoch: median [min]", "samples/s", "time vs funcnn",
             f"train loss at epoch {epochs}", "largest loss gap to the seed"],
            rows, [f"NumPy: {blas_line(self.blas)}.",
                   "funcnn computes in float32, the seed in float64: the loss gap is rounding.",
                   "funcnn's first call, compiling included: {:.2f} s (XLA {:.2f} s).".format(
                       *first["funcnn fit"][:2])])
        for name in times:
            if name.startswith(seed):
                r = pair_ratio(times[name], base)
                self.headline(f"funcnn fit vs {name}, full batch", f"{r:.2f}x")

    # --- section 6 ---

    def gpu(self):
        plan = self.plan
        gpus = [d for d in jax.devices() if d.platform == "gpu"]   # the default backend's
        cpu = jax.devices("cpu")[0]
        if not gpus and not self.quick:
            self.section("6. GPU", "No GPU on this machine (jax's devices: "
                         f"{', '.join(sorted({d.platform for d in jax.devices()}))}): nothing "
                         "measured. Where there is one, `pip install \".[cuda12]\"` (or "
                         "cuda13), then `python benchmarks/run.py` fills this section "
                         "(`--only gpu` prints it alone).",
                         [], [])
            self.headline("GPU: fit epoch at batch 128 and 1024, share of the GPU's matmul "
                          "rate, losses vs the CPU's", "no GPU on this machine")
            return
        device = gpus[0] if gpus else cpu      # --quick without a GPU: the CPU stands in
        stand_in = "" if gpus else " (no GPU here: the CPU stands in, to check the code path)"
        n, lr = plan["n_train"], 0.1
        net = self.relu_net()
        on = lambda tree: jax.device_put(tree, device)
        train, test = on(self.fashion_rows(n)), on(self.fashion_rows(plan["n_test"], part=1))
        params, key = on(fn.model.init(jax.random.key(0), net)), on(jax.random.key(1))
        runners = {bs: self.fit_runner(key, net, params, train, epochs=1, lr=lr, batch_size=bs)
                   for bs in plan["gpu_batches"]}
        first = {bs: self.clock.measure(run)[1:] for bs, run in runners.items()}
        s = plan["gpu_square"]
        runners["square"] = matmul_timer(s, s, s, False, False, plan["gpu_square_steps"],
                                         device)
        runners["square"]()                                   # compile
        times = interleave(runners, plan["repeats"])
        square_rate = 2 * s ** 3 / med(times["square"])
        rows = []
        for bs in plan["gpu_batches"]:
            rate = mlp_flops(net.sizes, n) / med(times[bs])
            accuracy = self.test_accuracy("funcnn", runners[bs], net, test)
            self.check(f"6. fit on {device.platform} learns at batch {bs}", accuracy > 0.5,
                       f"test accuracy {accuracy:.3f} after {n:,} rows (chance {CHANCE})")
            wall, xla, rest = first[bs]
            rows.append([bs, fmt_s(times[bs]), f"{n / med(times[bs]):,.0f}",
                         f"{rate / 1e9:,.1f}", f"{rate / square_rate:.1%}",
                         f"{wall:.2f} ({xla:.2f} + {rest:.2f})", f"{accuracy:.3f}"])
        # the same epoch on the CPU and on the device, from the same key, in full float32
        with jax.default_matmul_precision("float32"):
            results = [fn.train.fit(jax.device_put(key, d), net, jax.device_put(params, d),
                                    jax.device_put(train, d), jax.device_put(test, d),
                                    epochs=1, lr=lr, batch_size=128, verbose=False)
                       for d in (cpu, device)]
        (p_cpu, h_cpu), (p_dev, h_dev) = jax.tree.map(np.asarray, results)
        rel = lambda a, b: float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))
        loss_gap = max(rel(h_dev[k], h_cpu[k]) for k in ("train_loss", "test_loss"))
        param_gap = max(rel(a, b) for a, b in zip(jax.tree.leaves(p_dev),
                                                  jax.tree.leaves(p_cpu), strict=True))
        self.check(f"6. {device.platform} and cpu losses agree", loss_gap < 1e-3,
                   f"largest relative gap {loss_gap:.1e} (train and test loss after one "
                   f"epoch; params {param_gap:.1e}); float32 tolerance 1e-3")
        self.section(
            f"6. GPU: {device.device_kind}{stand_in}",
            f"The same `fit` with its data and params on {device} (jax.device_put; no other "
            f"change), one epoch of {n:,} rows per timed call, {plan['repeats']} repeats, "
            f"interleaved with a [{s},{s}] x [{s},{s}] float32 product at the default matmul "
            "precision (which XLA may run in TF32 on this GPU).",
            ["batch", "s / epoch: median [min]", "samples/s", "GFLOP/s", "share of the square "
             "product's rate", "first call s (XLA compile + trace/lower)", "test accuracy"],
            rows,
            [f"The square product: {square_rate / 1e12:.2f} TFLOP/s (median).",
             f"cpu vs {device.platform}, one epoch at batch 128 from the same key with "
             f"jax.default_matmul_precision('float32'): train and test loss within "
             f"{loss_gap:.1e} (relative), params within {param_gap:.1e}.",
             f"Sections 1 to 5 ran on jax's default device ({jax.devices()[0]}): on a GPU "
             "machine, section 4's ensembles are the GPU's (against PyTorch and NumPy on the "
             "CPU in sections 1, 2 and 5)."])
        if gpus:
            self.headline("GPU: fit epoch at batch " + " / ".join(map(str, plan["gpu_batches"])),
                          " / ".join(f"{med(times[bs]):.3f} s" for bs in plan["gpu_batches"]))
            self.headline("GPU: losses vs the CPU's (relative)", f"{loss_gap:.1e}", "< 1e-3",
                          loss_gap < 1e-3)

    # --- section 7 ---

    def cnn(self):
        """CNNs: a training step and evaluation against autodiff and PyTorch (cnn.py)."""
        if HERE not in sys.path:
            sys.path.insert(0, HERE)
        import cnn                                            # benchmarks/cnn.py
        cnn.cnn(self)

    # --- the Markdown file ---

    def markdown(self) -> str:
        import jaxlib
        torch = self.torch.__version__ if self.torch is not None else "not installed"
        command = " ".join(shlex.quote(a) for a in ["python", *sys.argv])
        lines = ["# funcnn benchmarks", "",
                 "Written by `benchmarks/run.py` (do not edit by hand): issue 5's measurements "
                 "and targets, from one run.", "",
                 "| | |", "| --- | --- |",
                 f"| command | `{command}` |",
                 f"| date | {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z} |",
                 f"| machine | {cpu_info()}, {CORES} cores, "
                 f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB |",
                 f"| load average (1 min) at start, end | {self.load_start[0]:.2f}, "
                 f"{self.load_end[0]:.2f} (a shared machine: other jobs ran alongside) |",
                 f"| versions | Python {platform.python_version()}, jax {jax.__version__}, "
                 f"jaxlib {jaxlib.__version__}, numpy {np.__version__}, torch {torch} |",
                 f"| jax device | {jax.devices()[0].device_kind} ({jax.default_backend()}) |",
                 f"| NumPy's BLAS (worker process) | {blas_line(self.blas)} |",
                 "| BLAS environment | " + ", ".join(f"{k}={os.environ.get(k)}"
                                                     for k in BLAS_ENV)
                 + " in this process; both unset for the NumPy worker |",
                 f"| run time | {self.elapsed:.0f} s |", "",
                 "## Headlines", "", "| what | measured | target | |",
                 "| --- | --- | --- | --- |"]
        for what, value, target, met in self.headlines:
            verdict = "" if met is None else ("met" if met else "**not met**")
            lines.append(f"| {what} | {value} | {target or ''} | {verdict} |")
        for title, intro, headers, rows, notes in self.sections:
            lines += ["", f"## {title}", "", intro, "", *_table(headers, rows)]
            if notes:
                lines += [""] + [f"- {note}" for note in notes]
        lines += ["", "## Learning checks (what `--quick` asserts)", ""]
        lines += [f"- {'ok' if ok else '**FAILED**'}: {name}: {detail}"
                  for name, ok, detail in self.checks]
        return "\n".join(lines) + "\n"


# --- pieces used above -----------------------------------------------------------------------

def _table(headers, rows) -> list[str]:
    if not headers:
        return []                                  # a section that is only words
    return ["| " + " | ".join(map(str, headers)) + " |",
            "|" + "|".join(" --- " for _ in headers) + "|",
            *("| " + " | ".join(map(str, row)) + " |" for row in rows)]


def cpu_info() -> str:
    fields = {}
    with open("/proc/cpuinfo") as f:
        for line in f:
            if ":" in line:
                k, v = (s.strip() for s in line.split(":", 1))
                fields.setdefault(k, v)
    flags = set(fields.get("flags", "").split())
    simd = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile") if f in flags]
    return (f"{fields.get('model name', platform.processor())} (family {fields.get('cpu family')}"
            f", model {fields.get('model')}; {' '.join(simd)})")


def blas_line(info) -> str:
    if "threadpoolctl" in info:
        return "; ".join(f"{d['internal_api']} {d['version']}, kernel {d['architecture']}, "
                         f"{d['num_threads']} threads" for d in info["threadpoolctl"])
    if "openblas" in info:
        o = info["openblas"]
        return (f"{o['config']} (kernel {o['kernel']}, {o['threads']} threads by default; "
                "asked through ctypes)")
    return info.get("show_config", "unknown")


def step_matmuls(sizes, bs):
    """The matmuls of one training step as (label, m, k, n, lhs stored transposed, rhs stored
    transposed): x W per layer, x^T g per layer, g W^T for every layer but the first."""
    out = []
    for i, (d_in, d_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        out.append((f"x W: [{bs},{d_in}] x [{d_in},{d_out}]", bs, d_in, d_out, False, False))
        out.append((f"x^T g: [{d_in},{bs}] x [{bs},{d_out}]", d_in, bs, d_out, True, False))
        if i:
            out.append((f"g W^T: [{bs},{d_out}] x [{d_out},{d_in}]", bs, d_out, d_in, False,
                        True))
    return out


def matmul_timer(m, k, n, lhs_t, rhs_t, steps, device=None):
    """A runner timing one float32 product [m, k] x [k, n] (seconds per product): `steps` of
    them in a jitted loop, on 4 distinct left sides, summed so none is dead code; on `device`
    if given (else jax's default)."""
    keys = jax.random.split(jax.random.key(0), 2)
    a = jax.random.normal(keys[0], (4, k, m) if lhs_t else (4, m, k), jnp.float32)
    b = jax.random.normal(keys[1], (n, k) if rhs_t else (k, n), jnp.float32)
    a, b = jax.device_put((a, b), device)

    @jax.jit
    def loop(a, b):
        def body(i, acc):
            lhs = a[i % 4].T if lhs_t else a[i % 4]
            return acc + lhs @ (b.T if rhs_t else b)
        return jax.lax.fori_loop(0, steps, body, jnp.zeros((m, n), jnp.float32))

    def run():
        start = time.perf_counter()
        jax.block_until_ready(loop(a, b))
        return (time.perf_counter() - start) / steps
    return run


@partial(jax.jit, static_argnames=("net", "epochs", "batch_size"))
def autodiff_fit(key, params, train, lr, *, net, epochs, batch_size):
    """The autodiff reference: fit's loop (the same shuffles and batches) with `jax.grad` in
    place of funcnn's hand-written backprop. Returns (params, history)."""
    n = train.x.shape[0]

    def loss(params, batch, w):
        out = fn.model.forward(net, params, batch.x)
        return net.loss.fn(out, batch.y, w), out

    def step(params, batch_rows):
        rows, w = batch_rows                                    # i32[batch_size], f32[batch_size]
        batch = fn.data.Dataset(train.x[rows], train.y[rows])
        (value, out), g = jax.value_and_grad(loss, has_aux=True)(params, batch, w)
        real = w.sum()
        return fn.model.sgd(params, g, lr), (value * real,
                                             fn.metrics.accuracy(out, batch.y, w) * real)

    def epoch(params, key):
        rows, w = fn.data.batches(key, n, batch_size, train.x.dtype)   # fit's shuffle
        params, (loss_sums, correct) = lax.scan(step, params, (rows, w))
        return params, (loss_sums.sum() / n, correct.sum() / n)

    params, (losses, accuracy) = lax.scan(epoch, params, fn.train.epoch_keys(key, epochs))
    return params, {"train_loss": losses, "train_accuracy": accuracy}


@partial(jax.jit, static_argnames=("n", "batch_size", "epochs"))
def epoch_shuffles(keys, *, n, batch_size, epochs):
    """fit_many's shuffles and nothing else: each network's `data.batches`, every epoch."""
    def epoch(total, i):
        rows, _ = jax.vmap(lambda k: fn.data.batches(jax.random.fold_in(k, i), n,
                                                     batch_size))(keys)
        return total + rows.sum(), None
    return lax.scan(epoch, jnp.int32(0), jnp.arange(epochs))[0]


def torch_copy(torch, params):
    """A PyTorch Sequential (Linear, ReLU, ..., Linear) holding funcnn's params."""
    layers = []
    for p in params:
        w = np.array(p["w"])                                  # [d_in, d_out]; torch: [out, in]
        linear = torch.nn.Linear(*w.shape)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(w.T.copy()))
            linear.bias.copy_(torch.from_numpy(np.array(p["b"])))
        layers += [linear, torch.nn.ReLU()]
    return torch.nn.Sequential(*layers[:-1])


def torch_train(torch, model, x, labels, batch_size, lr, generator):
    """One epoch of the usual eager loop, DataLoader-free: randperm, slice, forward, backward,
    step; the loss and the correct count summed per batch, as fit does."""
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    n = x.shape[0]
    order = torch.randperm(n, generator=generator)            # a new shuffle every epoch
    loss_sum, correct = torch.zeros(()), torch.zeros((), dtype=torch.long)
    for start in range(0, n, batch_size):
        rows = order[start:start + batch_size]
        xb, yb = x[rows], labels[rows]
        out = model(xb)
        loss = torch.nn.functional.cross_entropy(out, yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_sum += loss.detach() * len(rows)
        correct += (out.argmax(dim=1) == yb).sum()
    return float(loss_sum) / n, float(correct) / n


if __name__ == "__main__":
    sys.exit(main())
