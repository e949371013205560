"""Where the wall time of `python -m funcnn` (the Clojure run) goes: import, compile, run.

    python benchmarks/cli_time.py             # 3 repeats of everything (about two minutes)
    python benchmarks/cli_time.py --quick     # one cold run of each, no warm runs (CI smoke)

Every measurement is a fresh Python process, as a user's run is:
1. import   `python -c "pass"` (the interpreter alone), `-c "import jax"`, `-c "import funcnn"`,
            and `-c "import jax, os; os._exit(0)"`: import jax, then exit skipping the teardown.
2. the CLI  `python -m funcnn --out TMP/x.svg` end to end. Cold: XDG_CACHE_HOME is a new empty
            folder, so funcnn's compilation cache (XDG_CACHE_HOME/funcnn/xla) is empty. Warm: the
            same folder again. Warm --quiet: the same with --quiet (no per-epoch print), after
            one untimed --quiet run has filled the cache.
3. phases   a child process runs the steps of `funcnn.__main__.clusters` one phase at a time
            (data, init, fit, picture) with a `jax.monitoring` listener that sums the compile
            events: tracing to a jaxpr, lowering to MLIR, and XLA's compile (or, warm, the
            cache read). Each phase's wall time = compile + run. "start, exit, rest" is the
            rest of the process's wall time: the interpreter's start and a hard exit, as the
            CLI's (`funcnn.__main__.run`: jax's orderly teardown took 0.3 s).
Median over the repeats (min in brackets for the totals).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

PYTHON = sys.executable
COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration",
                  "/jax/core/compile/jaxpr_to_mlir_module_duration",
                  "/jax/core/compile/backend_compile_duration")
IMPORTS = ("pass", "import jax", "import funcnn",
           "import jax, os; os._exit(0)")                     # the same, skipping the teardown
PHASES = ("import jax", "import funcnn", "data", "init", "fit", "picture")


# --- the child: the steps of `clusters`, phase by phase ----------------------------------------

def child(quiet: bool, out_dir: str) -> None:
    """Run the Clojure job with the CLI's defaults; print {phase: [wall s, compile s]} as JSON."""
    times, compiled = {}, [0.0]

    def on_duration(event, seconds, **kwargs):             # jax calls this after each event
        if event in COMPILE_EVENTS:
            compiled[0] += seconds

    def phase(name, f):
        start, compile_before = time.perf_counter(), compiled[0]
        result = jax.block_until_ready(f())                 # wait for the device to finish
        times[name] = [time.perf_counter() - start, compiled[0] - compile_before]
        return result

    start = time.perf_counter()
    import jax
    times["import jax"] = [time.perf_counter() - start, 0.0]
    jax.monitoring.register_event_duration_secs_listener(on_duration)
    fn = phase("import funcnn", lambda: __import__("funcnn"))
    from funcnn.__main__ import _quick_compile, _use_compilation_cache
    _quick_compile()                                        # as the CLI does for clusters
    _use_compilation_cache()                                # as the CLI does, under XDG_CACHE_HOME

    def data():                                             # as clusters: from its t_start
        k_data, k_split, k_init, k_fit = jax.random.split(fn.rng.key(1337), 4)
        ds = fn.data.gaussian_clusters(k_data, n_per_class=400)
        return (k_init, k_fit), ds, fn.data.split(k_split, ds, train_fraction=0.8)

    (k_init, k_fit), ds, (train, test) = phase("data", data)
    net = fn.model.mlp([2, 8, 2], hidden=fn.math.sigmoid, output=fn.math.sigmoid,
                       loss=fn.losses.mse, init=fn.model.uniform(0.5))
    params = phase("init", lambda: fn.model.init(k_init, net))
    params, history = phase("fit", lambda: fn.train.fit(k_fit, net, params, train, test,
                                                        epochs=20, lr=0.5, batch_size=16,
                                                        verbose=not quiet))
    phase("picture", lambda: fn.visualization.decision_boundary(
        net, params, ds, os.path.join(out_dir, "boundary.svg")))
    print("PHASES " + json.dumps(times), flush=True)
    os._exit(0)                                             # as the CLI's run(): no teardown


# --- the parent: subprocesses, timed from outside ---------------------------------------------

def run(args, cache=None):
    """Run `python ARGS` in a fresh process; return (wall seconds, stdout)."""
    env = dict(os.environ)
    if cache is not None:
        env["XDG_CACHE_HOME"] = cache
    start = time.perf_counter()
    done = subprocess.run([PYTHON, *args], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"python {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return wall, done.stdout


def phases(cache, out_dir, quiet=False):
    """One child run: ({phase: (wall, compile)} plus 'start, exit, rest'; total wall)."""
    wall, stdout = run([__file__, "--child", "quiet" if quiet else "default", out_dir], cache)
    times = json.loads(stdout.rsplit("PHASES ", 1)[1])
    times["start, exit, rest"] = [wall - sum(w for w, _ in times.values()), 0.0]
    return times, wall


def measure(repeats, quick):
    imports = {code: [] for code in IMPORTS}
    cli = {"cold": [], "warm": [], "warm --quiet": []}
    split = {"cold": [], "warm": [], "warm --quiet": []}
    for _ in range(repeats):
        for code in IMPORTS:
            imports[code].append(run(["-c", code])[0])
        with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as out:
            svg = ["--out", os.path.join(out, "boundary.svg")]
            cli["cold"].append(run(["-m", "funcnn", *svg], cache)[0])
            if not quick:
                cli["warm"].append(run(["-m", "funcnn", *svg], cache)[0])
                run(["-m", "funcnn", "--quiet", *svg], cache)        # fill the cache for --quiet
                cli["warm --quiet"].append(run(["-m", "funcnn", "--quiet", *svg], cache)[0])
                split["warm --quiet"].append(phases(cache, out, quiet=True))
        with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as out:
            split["cold"].append(phases(cache, out))
            if not quick:
                split["warm"].append(phases(cache, out))
    return imports, cli, {k: v for k, v in split.items() if v}


def report(imports, cli, split):
    med = statistics.median
    print("import (a fresh process each)             wall s   [min]")
    for code, walls in imports.items():
        print(f"  python -c {code!r:<30}{med(walls):>6.2f}  [{min(walls):.2f}]")
    print("\npython -m funcnn, end to end              wall s   [min]")
    for name, walls in cli.items():
        if walls:
            print(f"  {name:<40}{med(walls):>6.2f}  [{min(walls):.2f}]")
    print("\nphases of the run (seconds)     " + "".join(f"{c:>22}" for c in split))
    print(f"{'':<32}" + f"{'compile':>12}{'run':>10}" * len(split))
    for name in (*PHASES, "start, exit, rest"):
        line = f"  {name:<30}"
        for runs in split.values():
            walls = [times[name][0] for times, _ in runs]
            compiles = [times[name][1] for times, _ in runs]
            line += f"{med(compiles):>12.2f}{med(walls) - med(compiles):>10.2f}"
        print(line)
    totals = "".join(f"{med(w for _, w in runs):>22.2f}" for runs in split.values())
    print(f"  {'total (process wall)':<30}{totals}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one cold run of each, no warm runs")
    parser.add_argument("--repeats", type=int, default=3, help="repeats (default 3)")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "OUT_DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child[0] == "quiet", args.child[1])
    repeats = 1 if args.quick else args.repeats
    print(f"{PYTHON}; {os.cpu_count()} CPUs; {repeats} repeat(s); median over repeats\n")
    report(*measure(repeats, args.quick))


if __name__ == "__main__":
    main()
