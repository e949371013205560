"""Where the time of a GPT training step goes: section 9's funcnn step (nanoGPT's CPU recipe:
4 blocks x 4 heads, 128 wide, context 64, batch 12, vocabulary 65), profiled op by op.

    python benchmarks/gpt_profile.py                  # half a minute on 2 idle cores
    python benchmarks/gpt_profile.py --steps 5 --no-layout --torch-s 0.02   # a smoke run
    XLA_FLAGS=... python benchmarks/gpt_profile.py    # the same under other XLA flags

How: XLA's CPU runtime puts one event per thunk (a fused loop, a library call, a copy) in
jax.profiler's trace, named by its HLO instruction. The compiled HLO text gives each
instruction its opcode, shapes and the Python stack that built it, so each op goes to a group:
a dot (or a library fusion holding one) to matmuls; an op of `windows`, `Embedding`, the loss
or the optimizer to that; an op that only moves data (copy, transpose, concatenate, slice) to
copies; the rest by the innermost funcnn function on its stack (LayerNorm, gelu, attention,
Dense's bias). An op's time is the thread time of its own work, on whichever thread it ran:
its event, and the pool tasks it scheduled (see `thread_time`: XLA hands a dot to Eigen and
returns at once, so the event of such a dot ends long before its work does); per step, the
median of its runs times its runs per step. XLA runs independent ops on the two threads at
once (a weight's gradient beside the input's), so an op's span can hold other ops' work.
Each product of the step is then timed in PyTorch at the same shapes and storage (a transposed
operand as a transposed view), on 4 left sides in turn, at 2 threads and 1.

`--layout` (on by default) also profiles the step with every x^T of a weight gradient copied
out (`backend.copied`'s size limit lifted for this run only), the layout YNNPACK takes.
"""
from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import linecache
import math
import os
import re
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

import funcnn as fn
from funcnn import backend
from funcnn.examples import shakespeare_char
import gpt
from gpt import BATCH, CONTEXT, HEADS, LAYERS, VOCAB, WIDTH
from timing import cpu_info, fmt_ratio, fmt_s, med

# (file, function prefix) -> group, matched from the innermost frame of an op's stack out
FRAME_GROUPS = (("text.py", "", "data windows"), ("embedding.py", "", "embedding gather/scatter"),
                ("optim.py", "", "optimizer (AdamW, clipping)"), ("losses.py", "", "loss"),
                ("math.py", "_gelu", "gelu"), ("norm.py", "", "layer norm"),
                ("attention.py", "_linear", "bias adds and sums"),
                ("attention.py", "", "attention softmax"),
                ("dense.py", "", "bias adds and sums"), ("compose.py", "Residual", "residual adds"))
EARLY = 4          # the FRAME_GROUPS that win over "copies/transposes" (their gathers, copies)
MOVES = {"parameter", "constant", "copy", "transpose", "concatenate", "slice", "bitcast",
         "reshape", "broadcast", "pad", "dynamic-slice", "dynamic-update-slice", "tuple",
         "get-tuple-element", "optimization-barrier"}
CONTAINERS = {"while", "call", "conditional"}          # their events hold other ops' events


# --- the step --------------------------------------------------------------------------------

def setup():
    """Section 9's funcnn step: (network, optimizer, params, optimizer state, tokens, key)."""
    net = shakespeare_char.gpt(VOCAB, CONTEXT, LAYERS, HEADS, WIDTH)
    opt = fn.optim.chain(fn.optim.clip_by_global_norm(1.0),
                         fn.optim.adamw(1e-3, b1=0.9, b2=0.99, weight_decay=0.1,
                                        mask=fn.optim.decay_weights_only))
    params = fn.model.init(jax.random.key(0), net)
    tokens = jnp.asarray(np.random.default_rng(0).integers(0, VOCAB, 200_000), jnp.int32)
    return net, opt, params, opt.init(params), tokens, jax.random.key(1)


def compiled_steps(steps, net, opt, params, state, tokens, key, copy_all=False):
    """Section 9's funcnn row (gpt.steps_of: `steps` steps of fit_steps's loop) compiled for
    these arguments: (run(), the optimized HLO text). `copy_all`: every x^T of a weight
    gradient copied out (backend.copied at any size)."""
    limit = backend.COPY_TRANSPOSE_MAX_ELEMENTS
    backend.COPY_TRANSPOSE_MAX_ELEMENTS = 2 ** 62 if copy_all else limit
    jax.clear_caches()                     # trace again: the limit is read when tracing
    try:
        exe = gpt.steps_of(net, opt, steps, BATCH).lower(key, params, state, tokens).compile()
    finally:
        backend.COPY_TRANSPOSE_MAX_ELEMENTS = limit
    return (lambda: jax.block_until_ready(exe(key, params, state, tokens))), exe.as_text()


def seconds(run):
    """The seconds one call of run() takes."""
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def trace(run):
    """One traced call of run(): (its trace events sorted by time, its wall time in us, {thread
    id: name})."""
    with tempfile.TemporaryDirectory() as tmp:
        with jax.profiler.trace(tmp):
            start = time.perf_counter()
            run()
            wall = (time.perf_counter() - start) * 1e6
        path, = glob.glob(os.path.join(tmp, "**", "*.trace.json.gz"), recursive=True)
        with gzip.open(path) as f:
            events = json.load(f)["traceEvents"]
    names = {e["tid"]: e["args"]["name"] for e in events
             if e.get("ph") == "M" and e.get("name") == "thread_name"}
    return sorted((e for e in events if e.get("ph") == "X"), key=lambda e: e["ts"]), wall, names


def thread_time(events, workers, containers):
    """Who each thread's time belongs to: [(run, op, us on all threads, first us, last us)],
    one entry per run of an op, and {"runtime": us, "idle": us} of the `workers` threads.

    Each thread runs, nested: the thunk executor (ThunkExecutor::Execute: its time outside
    ops is the runtime's, as is a while loop's or a call's, the `containers`), ops (an event
    named by its HLO op), and pool tasks (between ThreadpoolListener::StartRegion and
    StopRegion). A task belongs to whoever scheduled it
    (ThreadpoolListener::Record, inside an op's event, or inside a task of an op), matched to
    the tasks in the order they start: the other half of a parallel loop fusion, Eigen's
    share of a dot (XLA hands a dot to Eigen and returns at once: its event ends long before
    its work does), YNNPACK's helper tasks. Which task a StartRegion runs follows Eigen's pool:
    a thread first takes the newest task it scheduled itself, else steals the oldest of
    another's. A thread's innermost owner gets its time. A run's span ends with its last
    piece of work over 2 us (a helper task that finds nothing left to do runs after its op
    and takes ~0.5 us)."""
    points = []                                   # (time, order at equal times, kind, event)
    for e in events:
        name, tid = e["name"], e["tid"]
        if "hlo_op" in e.get("args", {}) or name == "ThunkExecutor::Execute":
            op = e.get("args", {}).get("hlo_op")
            kind = "op" if op and op not in containers else "runtime"
            points += [(e["ts"], 1, "open", (tid, kind, e)), (e["ts"] + e["dur"], 0, "close",
                                                              (tid, kind, e))]
        elif name.startswith("ThreadpoolListener::"):
            points.append((e["ts"], 2, name.split("::")[1], (tid, None, e)))
    points.sort(key=lambda p: (p[0], p[1]))
    stacks = {tid: [] for tid in workers}         # thread -> [owner]; owner: run id or a word
    runs = {}                                     # run id -> [op, us, first, last]
    scheduled = collections.defaultdict(collections.deque)   # thread -> its tasks' owners
    other = collections.Counter()
    last = points[0][0] if points else 0.0
    for t, _, what, (tid, kind, e) in points:
        for thread, stack in stacks.items():     # the time since the last point
            owner = stack[-1] if stack else "idle"
            if isinstance(owner, int):
                r = runs[owner]
                r[1] += t - last
                r[3] = t if t - last > 2.0 else r[3]
            elif thread in workers:
                other[owner] += t - last
        last = t
        stack = stacks.setdefault(tid, [])
        if what == "open":
            if kind == "op":
                runs[id(e)] = [e["args"]["hlo_op"], 0.0, t, t]
                stack.append(id(e))
            else:
                stack.append("runtime")
        elif what == "close":
            if stack:
                stack.pop()
        elif what == "Record":
            scheduled[tid].append(stack[-1] if stack else "runtime")
        elif what == "StartRegion":
            own, others = scheduled[tid], [q for q in scheduled.values() if q]
            stack.append(own.pop() if own else others[0].popleft() if others else "runtime")
        elif what == "StopRegion" and stack:
            stack.pop()
    return [(run_id, *r) for run_id, r in runs.items()], dict(other)


# --- the compiled program --------------------------------------------------------------------

class Hlo:
    """The optimized HLO text, read: instructions by name (opcode, shape, operands, the
    computation it calls, its stack frame) and the stack-frame tables that name their source."""
    LINE = re.compile(r"^\s+(?:ROOT )?%(\S+) = (.+?) ([a-z][a-z0-9_\-]*)\((.*)$")

    def __init__(self, text):
        self.ins, self.comps, self.tables = {}, collections.defaultdict(list), {}
        table, comp = None, None
        for line in text.split("\n"):
            if line in ("FileNames", "FunctionNames", "FileLocations", "StackFrames"):
                table = self.tables.setdefault(line, {})
            elif table is not None and re.match(r"^\d+ ", line):
                key, value = line.split(" ", 1)
                table[int(key)] = value
            elif line.endswith("{") and (line.startswith("%") or line.startswith("ENTRY")):
                table, comp = None, line.split("%", 1)[1].split(" ", 1)[0]
            elif (m := self.LINE.match(line)) and comp is not None:
                name, shape, op, rest = m.groups()
                called = re.search(r"(?:calls|to_apply|body)=%([^\s,]+)", rest)
                frame = re.search(r"stack_frame_id=(\d+)", rest)
                kind = re.search(r'"kind":"(__\w+)"', rest)
                self.ins[name] = dict(
                    name=name, op=op, shape=shape, rest=rest, comp=comp,
                    operands=re.findall(r"%([^\s,()]+)", rest.split(")", 1)[0]),
                    called=called and called.group(1), frame=frame and int(frame.group(1)),
                    library=kind and kind.group(1).strip("_").replace("_fusion", ""))
                self.comps[comp].append(name)

    def inner(self, name):
        """The instructions an op runs: itself, or its fused computation's, recursively."""
        ins = self.ins[name]
        if not ins["called"] or ins["op"] in CONTAINERS:
            return [ins]
        return [i for n in self.comps[ins["called"]] for i in self.inner(n)] or [ins]

    def stack(self, frame_id):
        """[(file, function, line)] of a stack frame, innermost first. (The text prints
        parent_frame_id one above the frame's id; 1 means none.)"""
        frames, t = [], self.tables
        while frame_id and frame_id in t.get("StackFrames", {}):
            loc, parent = map(int, re.findall(r"=(\d+)", t["StackFrames"][frame_id]))
            f = dict(re.findall(r"(\w+)=(\d+)", t["FileLocations"][loc]))
            frames.append((t["FileNames"][int(f["file_name_id"])].strip('"'),
                           t["FunctionNames"][int(f["function_name_id"])].strip('"'),
                           int(f["line"])))
            frame_id = parent - 1
        return frames

    def frames(self, name):
        """The stacks of an op: its own (a fusion's is its root's), then its inner ops'."""
        own = self.stack(self.ins[name]["frame"])
        return own, [f for i in self.inner(name) for f in self.stack(i["frame"])]

    def source(self, name, frame_id=None):
        """'function (file:line)  the line' of the innermost funcnn frame of an op."""
        own, inner = self.frames(name) if frame_id is None else (self.stack(frame_id), [])
        for file, function, line in own + inner:
            if "/funcnn/" in file and not file.endswith("backend.py"):
                text = " ".join(linecache.getline(file, line).split())[:60]
                return f"{function} ({os.path.basename(file)}:{line})  {text}"
        return "?"

    def group(self, name):
        """The group an op's time goes to: matmuls, one of FRAME_GROUPS, copies/transposes or
        other; by its own stack (a fusion's is its root's), then its inner ops'."""
        inner = self.inner(name)
        if any(i["op"] == "dot" for i in inner):
            return "matmuls"
        moves = all(i["op"] in MOVES for i in inner)
        for frames in self.frames(name):
            group = self._first(frames, FRAME_GROUPS[:EARLY])
            if group:
                return group
            if moves:
                return "copies/transposes"
            group = self._first(frames, FRAME_GROUPS[EARLY:])
            if group:
                return group
        return "copies/transposes" if moves else "other"

    @staticmethod
    def _first(frames, rules):
        """The group of the innermost frame that one of `rules` names, else None."""
        for file, function, _ in frames:
            for suffix, prefix, group in rules:
                if file.endswith(suffix) and function.startswith(prefix):
                    return group
        return None

    def dots(self, name):
        """The products an op computes: [(description, flops)]."""
        out = []
        for i in self.inner(name):
            if i["op"] != "dot":
                continue
            lhs, rhs = (self._dims(self.ins[o]["shape"]) for o in i["operands"][:2])
            dims = {k: tuple(map(int, re.findall(r"\d+", v))) for k, v in re.findall(
                r"(\w+_dims)=\{([\d,]*)\}", i["rest"])}
            lc, rc = dims.get("lhs_contracting_dims", ()), dims.get("rhs_contracting_dims", ())
            lb = dims.get("lhs_batch_dims", ())
            k = math.prod(lhs[0][d] for d in lc)
            batch = math.prod(lhs[0][d] for d in lb)
            m = math.prod(lhs[0]) // (k * batch)
            n = math.prod(rhs[0]) // (k * batch)
            lhs_t = lhs[1][0] not in lc                 # K is not the minor dim: stored K x M
            rhs_t = rhs[1][0] in rc                     # K is the minor dim: stored N x K
            engine = self.ins[name]["library"] or "XLA"
            out.append(Product(batch, m, k, n, lhs_t, rhs_t, engine,
                               self.source(name, i["frame"])))
        return out

    @staticmethod
    def _dims(shape):
        """'f32[768,128]{1,0}' -> ((768, 128), minor-to-major layout (1, 0))."""
        m = re.match(r"\w+\[([\d,]*)\](?:\{([\d,]*)\})?", shape)
        dims = tuple(int(d) for d in m.group(1).split(",") if d)
        layout = tuple(int(d) for d in (m.group(2) or "").split(",") if d)
        return dims, layout or tuple(reversed(range(len(dims))))


class Product(collections.namedtuple("Product", "batch m k n lhs_t rhs_t engine where")):
    """One matrix product of the step: `batch` products [m, k] x [k, n], the left side
    stored transposed (k x m) if lhs_t, the right (n x k) if rhs_t."""

    @property
    def flops(self):
        return 2 * self.batch * self.m * self.k * self.n

    def __str__(self):
        a = f"[{self.k},{self.m}]ᵀ" if self.lhs_t else f"[{self.m},{self.k}]"
        b = f"[{self.n},{self.k}]ᵀ" if self.rhs_t else f"[{self.k},{self.n}]"
        return f"{f'{self.batch} x ' if self.batch > 1 else ''}{a} {b}"


# --- the profile -----------------------------------------------------------------------------

def profile(hlo, runs, steps):
    """Per group: [thread us per step, ops per step, {op: thread us per step}]; per product:
    [(span us, threads: thread us / span) of each run]. An op's time is the median of its
    runs (one a step, or more) times its runs per step: a run the OS preempted (this machine
    is shared) does not count."""
    by_op = collections.defaultdict(list)
    for _, name, us, first, last in runs:
        if name in hlo.ins and hlo.ins[name]["op"] not in CONTAINERS:
            by_op[name].append((us, max(last - first, 1e-3)))
    groups = collections.defaultdict(lambda: [0.0, 0.0, collections.Counter()])
    products = collections.defaultdict(list)
    for name, r in by_op.items():
        us = med([u for u, _ in r]) * len(r) / steps
        g = groups[hlo.group(name)]
        g[0] += us
        g[1] += len(r) / steps
        g[2][name] += us
        dots = hlo.dots(name)
        for p in dots:
            products[p] += [(span / len(dots), u / span) for u, span in r]
    return groups, products


def print_groups(hlo, groups, other, wall_us, steps, threads):
    ops = sum(g[0] for g in groups.values())
    total = ops + sum(other.values()) / steps
    print(f"\nwhere a step's time goes: {wall_us / steps / 1e3:.2f} ms wall per step in the "
          f"traced call, {total / 1e3:.2f} ms of thread time on {threads} threads "
          f"({ops / 1e3:.2f} ms in ops); an op's time is the thread time of its own work, "
          "wherever it ran (the median run)")
    print(f"  {'group':30s} {'ms/step':>8s} {'share':>6s} {'ops':>5s}  the largest op")
    for name in sorted(groups, key=lambda n: -groups[n][0]):
        us, count, by_op = groups[name]
        top, top_us = by_op.most_common(1)[0]
        label = hlo.source(top) if name != "matmuls" else ""
        print(f"  {name:30s} {us / 1e3:8.2f} {us / total:6.1%} {count:5.0f}  "
              f"{top} {top_us:.0f} us: {label[:70]}")
    for name, why in (("runtime", "the thunk executor outside ops: dispatch, the scan's loop"),
                      ("idle", "a pool thread with nothing to run")):
        us = other.get(name, 0.0) / steps
        print(f"  {name:30s} {us / 1e3:8.2f} {us / total:6.1%}         ({why})")


def torch_seconds(torch, p, threads, budget_s):
    """Seconds per product in PyTorch: the same shapes and storage, 4 left sides in turn."""
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    b = (p.batch,) if p.batch > 1 else ()
    a = torch.randn(4, *b, *((p.k, p.m) if p.lhs_t else (p.m, p.k)), generator=g)
    w = torch.randn(*b, *((p.n, p.k) if p.rhs_t else (p.k, p.n)), generator=g)
    lhs = [a[i].transpose(-1, -2) if p.lhs_t else a[i] for i in range(4)]
    rhs = w.transpose(-1, -2) if p.rhs_t else w
    reps = max(8, int(budget_s / max(p.flops / 50e9, 1e-6)) // 4 * 4)
    best = math.inf
    for _ in range(3):
        start = time.perf_counter()
        for i in range(reps):
            torch.matmul(lhs[i % 4], rhs)
        best = min(best, (time.perf_counter() - start) / reps)
    return best


def print_products(products, steps, torch, budget_s):
    print("\nthe products (XLA: as run in the step, from its start to the end of its last work "
          "on any thread, the median of its runs, and the threads it kept busy meanwhile; "
          "PyTorch: the same product by itself, best of 3)")
    print(f"  {'product (storage; ᵀ: stored transposed)':34s} {'engine':7s} {'/step':>5s} "
          f"{'us':>6s} {'thr':>4s} {'GFLOP/s':>7s} {'/thread':>7s} {'torch 2t':>8s} "
          f"{'torch 1t':>8s}  where")
    rows = sorted(products.items(), key=lambda kv: -len(kv[1]) * med([s for s, _ in kv[1]]))
    for p, runs in rows:
        us, used = med([s for s, _ in runs]), med([u for _, u in runs])
        rates = ["", ""]
        if torch is not None:
            rates = [f"{p.flops / torch_seconds(torch, p, t, budget_s) / 1e9:8.0f}"
                     for t in (2, 1)]
        print(f"  {str(p):34s} {p.engine:7s} {len(runs) / steps:5.0f} {us:6.0f} {used:4.1f} "
              f"{p.flops / us / 1e3:7.0f} {p.flops / us / 1e3 / used:7.0f} {rates[0]:>8s} "
              f"{rates[1]:>8s}  {p.where[:64]}")
    if torch is not None:
        torch.set_num_threads(len(os.sched_getaffinity(0)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="steps per call (default 20)")
    parser.add_argument("--calls", type=int, default=5, help="untraced calls timed (default 5)")
    parser.add_argument("--torch-s", type=float, default=0.1,
                        help="seconds per PyTorch timing (default 0.1)")
    parser.add_argument("--no-layout", dest="layout", action="store_false",
                        help="skip the step with every x^T copied")
    args = parser.parse_args()
    try:
        import torch
    except ImportError:
        torch = None
    print(f"{cpu_info()}; {len(os.sched_getaffinity(0))} cores; jax {jax.__version__}; "
          f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '') or '(none)'}")
    variants = {"as is": False, "every x^T copied": True} if args.layout else {"as is": False}
    runs = {name: compiled_steps(args.steps, *setup(), copy) for name, copy in variants.items()}
    walls = {name: [] for name in runs}
    for name, (run, _) in runs.items():
        run()                                          # warm-up
    for _ in range(args.calls):                        # interleaved: one call each in turn
        for name, (run, _) in runs.items():
            walls[name].append(seconds(run) / args.steps)
    for name, (run, text) in runs.items():
        print(f"\n=== the step {name}: {fmt_s(walls[name], 1e3, 2)} ms per step, median [min] "
              f"of {args.calls} untraced calls of {args.steps} steps"
              + ("" if name == "as is" else
                 f"; its time / the step as is: {fmt_ratio(walls[name], walls['as is'])}"))
        hlo = Hlo(text)
        events, wall, threads = trace(run)
        workers = {t for t, n in threads.items() if "Eigen" in n} or set(threads)
        containers = {n for n, i in hlo.ins.items() if i["op"] in CONTAINERS}
        op_runs, other = thread_time(events, workers, containers)
        missing = {r[1] for r in op_runs} - set(hlo.ins)
        if missing:
            print(f"  note: {len(missing)} traced ops not in the HLO text: {sorted(missing)[:5]}")
        groups, products = profile(hlo, op_runs, args.steps)
        print_groups(hlo, groups, other, wall, args.steps, len(workers))
        print_products(products, args.steps, torch if name == "as is" else None, args.torch_s)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
