"""Every benchmark in one command; the tables go to `benchmarks/RESULTS.md`.

    python benchmarks/run.py            # everything (about 20 minutes on 2 cores); writes
                                        # RESULTS.md
    python benchmarks/run.py --quick    # smoke run (CI, half a minute): small data, one repeat;
                                        # checks that every implementation learns, no timing
    python benchmarks/run.py --only ensembles   # one section (repeatable); writes no file
                                        # (roofline needs epoch_speed in the same run)

The sections, in the order they run (`--only` takes the names in brackets), one file each:
1. `epoch_speed.py` [epoch_speed, roofline]: one epoch of the Fashion-MNIST MLP, funcnn `fit`
   against `jax.grad` in a `lax.scan`, PyTorch eager and seed 2's NumPy loop; then the float32
   matmul roofline of this machine, interleaved with fit's epochs.
2. `growth.py` [growth, dataset_size]: how the cost grows with hidden width x batch size
   (funcnn and PyTorch), and with the data set's size (funcnn's time and compile time).
3. `cli_time.py` [cli]: `python -m funcnn` (the Clojure run) in fresh processes, end to end and
   split into import, compile, data + init, train, picture; cold and warm compilation cache.
4. `ensembles.py` [ensembles]: 1 to 4,096 Clojure networks at once with `fit_many`, against
   PyTorch's `torch.func` ensemble recipe.
5. `seed_full_batch.py` [seed_full_batch]: seed 2 as written (full batch, L2, the validation
   loss every epoch), funcnn `fit` against the NumPy original.
6. `gpu.py` [gpu]: the same `fit` on a GPU, where jax sees one (`pip install ".[cuda12]"`);
   without one the section says so, and `--quick` runs it with the CPU standing in.
7. `cnn.py` [cnn]: a training step of two CNNs, funcnn fit against autodiff, lax.conv +
   jax.grad, PyTorch eager and torch.compile; then evaluating the test images.
8. `cnn_growth.py` [cnn_growth]: how a CNN step's cost grows with channels, input size and
   batch (funcnn), and what a step at batch 512 keeps in memory (funcnn and PyTorch).
9. `gpt.py` [gpt]: a training step of the character-level GPT at nanoGPT's CPU recipe, in
   tokens per second: funcnn against jax.grad of its forward, PyTorch eager and torch.compile.
10. `gpt_growth.py` [gpt_growth]: how a GPT step's time per token grows with the context, up
    to nanoGPT's GPU recipe (6 x 6 heads, 384 wide, context 256, batch 64), beside its FLOPs,
    and what a step keeps in memory (funcnn and PyTorch eager).
Beside them, run on their own: `attention_blocks.py` (attention's two formulations at contexts
64 to 512), `gpt_profile.py` (where a GPT step's time goes), `xla_flags.py` (XLA's library
flags), `ab.py` (two commits' steps).
What they are timed against lives in `rivals/` (`rivals/__init__.py` lists it); how they are
timed, in `timing.py`; the Fashion-MNIST rows and MLP they share, in `fashion.py`.

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
import datetime
import os
import platform
import shlex
import sys
import time

import jax
import numpy as np

import funcnn as fn
from cli_time import cli
from cnn import cnn
from cnn_growth import cnn_growth
from ensembles import ensembles
from epoch_speed import epoch_speed, roofline
from gpu import gpu
from gpt import gpt
from gpt_growth import gpt_growth
from growth import dataset_size, growth
from rivals.numpy_loop import BLAS_ENV, NumpyWorker, blas_line
from seed_full_batch import seed_full_batch
from timing import CORES, CompileClock, cpu_info

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "RESULTS.md")

# what each mode runs: repeats, data sizes, epochs, the growth grid
PLANS = {
    "full": dict(repeats=7, n_train=60_000, n_test=10_000, roof_steps=200, square=2048,
                 widths=(128, 512, 2048), batches=(32, 128, 512), growth_flops=1.5e10,
                 growth_steps=(10, 400), growth_repeats=3, sizes=(6_000, 60_000),
                 cli_repeats=2, members=(1, 16, 256, 4096), member_repeats=5,
                 big_members=4096, big_member_repeats=3,
                 seed_rows=50_000, seed_val=10_000, seed_epochs=5, seed_repeats=3,
                 gpu_batches=(128, 1024), gpu_square=8192, gpu_square_steps=20,
                 cnn_batches=(32, 128, 512), cnn_steps=40, cnn_min_steps=24, cnn_flops=3e10,
                 cnn_repeats=5, cnn_compile=True, cnn_eval_rows=10_000, cnn_eval_chunk=500,
                 cnn_eval_repeats=3, growth_sides=(28, 56),
                 growth_channels=((16, 32), (32, 64), (64, 128)), growth_batches=(32, 128, 512),
                 growth_cnn_flops=3e10, growth_cnn_repeats=3, gpt_steps=50, gpt_repeats=5,
                 gpt_growth_shapes=((64, 12, 4, 4, 128), (128, 12, 4, 4, 128),
                                    (256, 12, 4, 4, 128), (256, 64, 6, 6, 384)),
                 gpt_growth_flops=8e10, gpt_growth_min_steps=1, gpt_growth_repeats=3),
    "quick": dict(repeats=1, n_train=6_000, n_test=1_000, roof_steps=10, square=256,
                  widths=(128,), batches=(128,), growth_flops=1e8, growth_steps=(5, 10),
                  growth_repeats=1, sizes=(600, 6_000), cli_repeats=0, members=(1, 16),
                  member_repeats=1, seed_rows=2_000, seed_val=500, seed_epochs=2,
                  seed_repeats=1, gpu_batches=(128, 1024), gpu_square=256, gpu_square_steps=2,
                  cnn_batches=(128,), cnn_steps=3, cnn_min_steps=3, cnn_flops=8e9,
                  cnn_repeats=1, cnn_compile=False, cnn_eval_rows=500, cnn_eval_chunk=500,
                  cnn_eval_repeats=1, growth_sides=(28,), growth_channels=((16, 32),),
                  growth_batches=(32,), growth_cnn_flops=1e8, growth_cnn_repeats=1,
                  gpt_steps=3, gpt_repeats=1, gpt_growth_shapes=((64, 12, 4, 4, 128),),
                  gpt_growth_flops=0, gpt_growth_min_steps=2, gpt_growth_repeats=1),
}


# the sections, in the order they run: `--only NAME` runs NAME's (roofline reuses epoch_speed's
# fit runner); each takes the Bench below and adds its checks, tables and headlines to it
SECTIONS = {"epoch_speed": epoch_speed, "roofline": roofline, "growth": growth,
            "dataset_size": dataset_size, "cli": cli, "ensembles": ensembles,
            "seed_full_batch": seed_full_batch, "gpu": gpu, "cnn": cnn,
            "cnn_growth": cnn_growth, "gpt": gpt, "gpt_growth": gpt_growth}
# the sections that run without Fashion-MNIST
WITHOUT_DATA = ("cli", "ensembles", "gpt", "gpt_growth")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: small data, one repeat; checks learning, not timings")
    parser.add_argument("--out", default=None, help="where to write the Markdown results "
                        "(default: benchmarks/RESULTS.md for a full run, nowhere for --quick)")
    parser.add_argument("--only", action="append", choices=SECTIONS, metavar="SECTION",
                        help="run only this section (repeatable): " + ", ".join(SECTIONS))
    args = parser.parse_args()
    # one CPU device per core, before JAX starts: section 4 splits ensembles over them (one
    # device's kernels use one core); every other section runs on the first device, as before
    jax.config.update("jax_num_cpu_devices", CORES)
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
    """What the sections share: the plan, the data, the rivals' handles (torch, the NumPy
    worker), the compile clock; and what they hand back: tables, learning checks, headlines."""

    def __init__(self, plan, quick, only=None):
        self.plan, self.quick, self.only = plan, quick, only
        self.sections = []           # (title, intro, headers, rows, notes)
        self.checks = []             # (name, ok, detail): does every implementation learn?
        self.headlines = []          # (what, value, target, met or None)
        self.s1 = None               # epoch_speed's fit runner and sizes, for roofline
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
            self.fashion = fn.data.fashion_mnist()            # (train, test) Datasets
        except FileNotFoundError as e:
            self.fashion = None
            print(f"note: Fashion-MNIST not found, sections 1, 2, 5, 6 and 7 are skipped ({e})")
        for name, section in SECTIONS.items():
            if self.fashion is None and name not in WITHOUT_DATA:
                continue
            if self.only and name not in self.only:
                continue
            print(f"\n[{time.perf_counter() - self.started:6.1f} s] {name}", flush=True)
            section(self)
        self.load_end = os.getloadavg()
        self.elapsed = time.perf_counter() - self.started
        print("\n## Headlines")
        for what, value, target, met in self.headlines:
            verdict = "" if met is None else f" (target {target}: {'met' if met else 'NOT met'})"
            print(f"  {what}: {value}{verdict}")

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


def _table(headers, rows) -> list[str]:
    if not headers:
        return []                                  # a section that is only words
    return ["| " + " | ".join(map(str, headers)) + " |",
            "|" + "|".join(" --- " for _ in headers) + "|",
            *("| " + " | ".join(map(str, row)) + " |" for row in rows)]


if __name__ == "__main__":
    sys.exit(main())
