"""Where the wall time of `python -m funcnn` (the Clojure run) goes: import, compile, run.
Also section 3 of `benchmarks/run.py` (`cli`, below: the same runs, without the imports).

    python benchmarks/cli_time.py             # 3 repeats of everything (about two minutes)
    python benchmarks/cli_time.py --quick     # one cold run of each, no warm runs (CI smoke)
    python benchmarks/run.py --only cli       # section 3 (--quick: one cold run, must learn)

Every measurement is a fresh Python process, as a user's run is:
1. import   `python -c "pass"` (the interpreter alone), `-c "import jax"`, `-c "import funcnn"`,
            and `-c "import jax, os; os._exit(0)"`: import jax, then exit skipping the teardown.
2. the CLI  `python -m funcnn --out TMP/x.svg` end to end. Cold: XDG_CACHE_HOME is a new empty
            folder, so funcnn's compilation cache (XDG_CACHE_HOME/funcnn/xla) is empty. Warm: the
            same folder again. Warm --quiet: the same with --quiet (no per-epoch print), after
            one untimed --quiet run has filled the cache.
3. phases   a child process (`cli_phases.py`) runs the steps of `funcnn.__main__.clusters`
            one phase at a time (data, init, fit, picture) with a `jax.monitoring` listener
            that sums the compile events: tracing to a jaxpr, lowering to MLIR, and XLA's
            compile (or, warm, the cache read). Each phase's wall time = compile + run.
            "start, exit, rest" is the rest of the process's wall time: the interpreter's
            start and a hard exit, as the CLI's (`funcnn.__main__.run`: jax's orderly
            teardown took 0.3 s).
Median over the repeats (min in brackets for the totals).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

from timing import fmt_s, med

PYTHON = sys.executable
CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cli_phases.py")
IMPORTS = ("pass", "import jax", "import funcnn",
           "import jax, os; os._exit(0)")                     # the same, skipping the teardown
PHASES = ("import jax", "import funcnn", "data", "init", "fit", "picture")


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
    wall, stdout = run([CHILD, "quiet" if quiet else "default", out_dir], cache)
    times = json.loads(stdout.rsplit("PHASES ", 1)[1])
    times["start, exit, rest"] = [wall - sum(w for w, _ in times.values()), 0.0]
    return times, wall


def measure(repeats, quick, imports=True):
    """The runs of the docstring, `repeats` times: ({import code: walls}, {CLI run: walls},
    {split: [phases(...)]}); quick: the cold runs only; imports=False: no import runs."""
    imports = {code: [] for code in IMPORTS} if imports else {}
    cli = {"cold": [], "warm": [], "warm --quiet": []}
    split = {"cold": [], "warm": [], "warm --quiet": []}
    for _ in range(repeats):
        for code in imports:
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


# --- section 3 of run.py ---------------------------------------------------------------------

def cli(bench):
    """Section 3: the end-to-end runs and the split into phases, as one table; in --quick one
    cold run, which must learn."""
    if bench.quick:                                           # one cold run: does it learn?
        with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as out:
            wall, stdout = run(["-m", "funcnn", "--quiet", "--out",
                                os.path.join(out, "b.svg")], cache)
        found = re.search(r"test accuracy ([0-9.]+)", stdout)
        accuracy = float(found.group(1)) if found else float("nan")
        bench.check("3. python -m funcnn learns", accuracy > 0.8,
                    f"test accuracy {accuracy:.4f} (one cold run, {wall:.1f} s)")
        return
    _, e2e, split = measure(bench.plan["cli_repeats"], quick=False, imports=False)

    def part(runs, phases, what):                             # what: wall, compile or run
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
    bench.section(
        "3. The Clojure run, `python -m funcnn` (seconds)",
        "Fresh processes. Cold: an empty compilation cache (XDG_CACHE_HOME a new folder); "
        "warm: the same folder again; warm --quiet: the same with --quiet, after one "
        "--quiet run filled the cache. The split comes from cli_time.py's child, which runs "
        "the CLI's steps one phase at a time under a compile listener; end to end is the "
        f"command itself. {bench.plan['cli_repeats']} repeats.",
        ["phase", "cold", "warm", "warm --quiet"], rows,
        ["`--quiet` drops the per-epoch lines, and with them fit's host callback: the "
         "persistent cache's key for a program holds its callbacks' addresses, new in "
         "every process, so without --quiet fit misses the cache and compiles every run."])
    for k in e2e:
        cache = "an empty" if k == "cold" else "a filled"
        bench.headline(f"python -m funcnn{' --quiet' if 'quiet' in k else ''}, {cache} "
                       "compilation cache, end to end", fmt_s(e2e[k], digits=2) + " s",
                       "< 3 s", med(e2e[k]) < 3.0)


# --- run alone -----------------------------------------------------------------------------------

def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one cold run of each, no warm runs")
    parser.add_argument("--repeats", type=int, default=3, help="repeats (default 3)")
    args = parser.parse_args()
    repeats = 1 if args.quick else args.repeats
    print(f"{PYTHON}; {os.cpu_count()} CPUs; {repeats} repeat(s); median over repeats\n")
    report(*measure(repeats, args.quick))


if __name__ == "__main__":
    main()
