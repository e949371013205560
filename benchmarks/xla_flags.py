"""The GPT training step (section 9's funcnn row) under the XLA CPU flags that hand products
and reductions to libraries (YNNPACK, oneDNN, XNNPACK), natively and with XLA's own code
limited to AVX2, each in fresh processes (XLA reads its flags once, when jax starts).

    python benchmarks/xla_flags.py                  # 3 rounds: about 7 minutes on 2 cores
    python benchmarks/xla_flags.py --rounds 1 --steps 5 --calls 1      # a smoke run

1. Which values parse: a tiny program under each flag value (XLA aborts on a value it does
   not know, and warns on an unknown --xla_cpu_max_isa).
2. What each flag set does: the GPT step compiled under it; the library fusions and custom
   calls in its optimized HLO, and its losses over `--steps` steps beside the default's. A
   set whose program is the same as an earlier set's (the same HLO, metadata aside) is not
   timed: its time is that set's.
3. The time: each distinct program natively and with --xla_cpu_max_isa=AVX2 (and
   ONEDNN_MAX_CPU_ISA=AVX2, which oneDNN honours); one fresh process per program per round,
   in a new shuffled order each round; each process times `--calls` calls of `--steps` steps
   after a warm-up and keeps its best. The table gives median [min] ms per step over the
   rounds and the ratio to the default of the same column: median of the per-round ratios
   [ratio of the mins], < 1 faster. --xla_cpu_max_isa limits only the code XLA generates:
   YNNPACK and XNNPACK pick their kernels from the CPU itself (cpuinfo), and XLA's Eigen dots
   were compiled in, so on an AVX-512 machine this is not an AVX2 machine.
"""
from __future__ import annotations

import argparse
import collections
import glob
import hashlib
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
from functools import partial

YNN = "--xla_cpu_experimental_ynn_fusion_type"
XNN = "--xla_cpu_experimental_xnn_fusion_type"
ONEDNN = "--xla_cpu_experimental_onednn_fusion_type"
USE_ONEDNN = "--xla_cpu_use_onednn=true"
# (name, XLA_FLAGS): the default first; the others' ratios are to it
VARIANTS = (
    ("default", ""),
    ("no YNNPACK (XLA's own dots, Eigen)", f"{YNN}="),
    ("YNNPACK dots only", f"{YNN}=dot"),
    ("YNNPACK individual dots only", f"{YNN}=individual_dot"),
    ("YNNPACK reductions only", f"{YNN}=reduce"),
    ("YNNPACK eltwise only", f"{YNN}=eltwise"),
    ("YNNPACK default + eltwise", f"{YNN}=+eltwise"),
    ("oneDNN on, no fusion type", USE_ONEDNN),
    ("oneDNN custom calls", f"{USE_ONEDNN} --xla_cpu_experimental_onednn_custom_call=true"),
    ("oneDNN dots (YNNPACK: the rest)", f"{USE_ONEDNN} {ONEDNN}=dot"),
    ("oneDNN dots, no YNNPACK", f"{USE_ONEDNN} {ONEDNN}=dot {YNN}="),
    ("oneDNN dots + eltwise + reduce, no YNNPACK",
     f"{USE_ONEDNN} {ONEDNN}=dot,eltwise,reduce {YNN}="),
    ("XNNPACK dots, no YNNPACK", f"--xla_cpu_use_xnnpack=true {XNN}=dot {YNN}="),
    ("XNNPACK graph fusion, no YNNPACK",
     f"--xla_cpu_experimental_xnn_graph_fusion_mode=XNN_GRAPH_FUSION_MODE_GREEDY {YNN}="),
)
PROBES = ([f"{flag}={v}" for flag in (YNN, XNN, ONEDNN)
           for v in ("dot", "eltwise", "reduce", "individual_dot", "individual_convolution",
                     "dot,reduce", "+eltwise", "-reduce", "convolution")]
          + [USE_ONEDNN, "--xla_cpu_use_xnnpack=true",
             "--xla_cpu_experimental_onednn_custom_call=true",
             "--xla_cpu_max_isa=AVX2", "--xla_cpu_max_isa=AVX512"])
AVX2 = ("--xla_cpu_max_isa=AVX2", {"ONEDNN_MAX_CPU_ISA": "AVX2"})


# --- the worker: one flag set, in its own process ---------------------------------------------

def worker(mode, steps, calls):
    """Compile the step under this process's XLA_FLAGS; print one line of JSON: in "check"
    mode the library ops of its HLO, a fingerprint of it and the losses; in "time" mode the
    seconds per step of `calls` calls after a warm-up, and the losses."""
    import time
    import gpt_profile
    import numpy as np
    run, text = gpt_profile.compiled_steps(steps, *gpt_profile.setup())
    losses = np.asarray(run()[2]).tolist()
    out = {"losses": losses}
    if mode == "check":
        body = re.sub(r", metadata=\{[^}]*\}", "", text[text.index("\n%"):])
        out["fingerprint"] = hashlib.sha1(body.encode()).hexdigest()[:12]
        hlo = gpt_profile.Hlo(text)
        libs = collections.Counter(i["library"] for i in hlo.ins.values() if i["library"])
        libs.update(f"custom-call {t}" for t in re.findall(r'custom_call_target="([^"]+)"', text))
        in_library = {i["called"] for i in hlo.ins.values() if i["library"]}
        libs["XLA dots"] = sum(i["op"] == "dot" and i["comp"] not in in_library
                               for i in hlo.ins.values())
        out["libraries"] = dict(libs)
    else:
        seconds = []
        for _ in range(calls):
            start = time.perf_counter()
            run()
            seconds.append((time.perf_counter() - start) / steps)
        out["seconds"] = seconds
    print(json.dumps(out), flush=True)


# --- the parent -------------------------------------------------------------------------------

def spawn(cache, flags, mode, steps, calls, env_extra=None):
    """Start a worker process under XLA_FLAGS = flags. `cache`: jax's persistent compilation
    cache, shared by the workers (its key holds XLA_FLAGS): a program compiles once."""
    env = dict(os.environ, XLA_FLAGS=flags, **(env_extra or {}))
    if cache:
        env.update(JAX_COMPILATION_CACHE_DIR=cache, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    return subprocess.Popen([sys.executable, __file__, "--worker", mode, "--steps", str(steps),
                             "--calls", str(calls)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            cwd=os.path.dirname(os.path.abspath(__file__)))


def finish(proc):
    """(the worker's JSON or None, the first error line)."""
    out, err = proc.communicate()
    lines = [l for l in err.split("\n") if re.search(r"Illegal|Unknown|rror|Check failed", l)]
    ok = proc.returncode == 0 and out.strip()
    error = lines[0].strip()[:150] if lines else ""
    return (json.loads(out.strip().split("\n")[-1]) if ok else None), error


def in_pairs(jobs):
    """Run (key, Popen factory) jobs two at a time (2 cores); {key: finish(proc)}."""
    results, running = {}, []
    for key, start in jobs:
        running.append((key, start()))
        if len(running) == 2:
            k, p = running.pop(0)
            results[k] = finish(p)
    for k, p in running:
        results[k] = finish(p)
    return results


def probe(flags):
    """A tiny program under `flags`: does XLA take them?"""
    env = dict(os.environ, XLA_FLAGS=flags)
    code = "import jax, jax.numpy as jnp; print(jax.jit(lambda x: x @ x)(jnp.ones((4, 4)))[0, 0])"
    return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def compare_losses(losses, ref):
    """'first 1e-7, worst 3e-5': relative differences from the default's losses."""
    rel = [abs(a - b) / abs(b) for a, b in zip(losses, ref, strict=True)]
    return f"first {rel[0]:.0e}, worst {max(rel):.0e}"


def check_flags():
    """Part 1: which flag values XLA takes."""
    print("\n1. which flag values XLA takes")
    taken = in_pairs((f, partial(probe, f)) for f in PROBES)
    for f in PROBES:
        result, err = taken[f]
        print(f"  {f:62s} {'parses' if result is not None and not err else 'REFUSED: ' + err}")


def check_programs(cache, steps):
    """Part 2: each flag set's program; returns ({name: check} of the distinct programs, in
    VARIANTS order, {name: the earlier set with the same program})."""
    print(f"\n2. what each flag set does to the compiled step (losses: {steps} steps from the "
          "same start, relative difference from the default's)")
    checks = in_pairs((name, partial(spawn, cache, flags, "check", steps, 1))
                      for name, flags in VARIANTS)
    ref = checks["default"][0]
    distinct, same_as = {}, {}
    for name, _ in VARIANTS:
        result, err = checks[name]
        if result is None:
            print(f"  {name:44s} FAILED: {err}")
            continue
        first = next((n for n, r in distinct.items()
                      if r["fingerprint"] == result["fingerprint"]), None)
        if first is None:
            distinct[name] = result
        else:
            same_as[name] = first
        libs = ", ".join(f"{k} {v}" for k, v in sorted(result["libraries"].items()))
        print(f"  {name:44s} {libs:30s} losses {compare_losses(result['losses'], ref['losses'])}"
              + (f"; the same program as '{first}'" if first else ""))
    return distinct, same_as


def check_isa():
    """Part 2b: what --xla_cpu_max_isa=AVX2 (and ONEDNN_MAX_CPU_ISA) change: AVX-512
    instructions (zmm registers, mask registers, xmm/ymm 16-31) in the objects XLA generated
    for the step (objdump), and the ISA oneDNN reports (ONEDNN_VERBOSE)."""
    print("\n2b. what AVX2 changes (the oneDNN-dots program, natively and at AVX2)")
    flags = dict(VARIANTS)["oneDNN dots (YNNPACK: the rest)"]
    for isa in ("native", "AVX2"):
        with tempfile.TemporaryDirectory() as dump:
            extra = f" --xla_dump_to={dump}" + (f" {AVX2[0]}" if isa == "AVX2" else "")
            env = dict(AVX2[1] if isa == "AVX2" else {}, ONEDNN_VERBOSE="1")
            proc = spawn(None, flags + extra, "time", 1, 1, env)    # compiled: dumped
            out, _ = proc.communicate()
            onednn = re.search(r"onednn_verbose,.*,isa:(.*)", out)
            counts = collections.Counter()
            for obj in glob.glob(os.path.join(dump, "*.o")):
                try:
                    text = subprocess.run(["objdump", "-d", obj], capture_output=True,
                                          text=True).stdout
                except FileNotFoundError:
                    print("  (no objdump here: the object code is not checked)")
                    break
                counts["zmm"] += len(re.findall(r"%zmm", text))
                counts["k masks"] += len(re.findall(r"%k[1-7]", text))
                counts["xmm/ymm16-31"] += len(re.findall(r"%[xy]mm(?:1[6-9]|2\d|3[01])", text))
            print(f"  {isa:6s} XLA's objects: {sum(counts.values()):5d} AVX-512 operands "
                  f"({', '.join(f'{k} {v}' for k, v in counts.items())}); oneDNN's ISA: "
                  f"{onednn.group(1) if onednn else '?'}")


def time_programs(cache, names, rounds, steps, calls):
    """Part 3: {(name, isa): {round: best seconds per step}}, {(name, isa): losses}."""
    print(f"\n3. time: {len(names)} distinct programs x (native, AVX2), {rounds} rounds of "
          f"fresh processes, best of {calls} calls of {steps} steps each")
    flags_of = dict(VARIANTS)
    runs = [(name, isa) for name in names for isa in ("native", "AVX2")]
    times, losses = {run: {} for run in runs}, {}
    order = random.Random(0)
    for r in range(rounds):
        for name, isa in order.sample(runs, len(runs)):
            flags = f"{flags_of[name]} {AVX2[0]}" if isa == "AVX2" else flags_of[name]
            result, err = finish(spawn(cache, flags.strip(), "time", steps, calls,
                                       AVX2[1] if isa == "AVX2" else None))
            if result is None:
                print(f"  round {r + 1}: {name} ({isa}) FAILED: {err}")
                continue
            times[(name, isa)][r] = min(result["seconds"])
            losses[(name, isa)] = result["losses"]
        print(f"  round {r + 1} of {rounds} done", flush=True)
    return times, losses


def cell(t, base):
    """'ms median [min]' and 'ratio median [ratio of mins]' of one row against its default,
    the ratios over the rounds both ran in."""
    if not t or not base:
        return "", ""
    pairs = [t[r] / base[r] for r in t if r in base]
    ms = f"{statistics.median(t.values()) * 1e3:7.2f} [{min(t.values()) * 1e3:6.2f}]"
    return ms, f"{statistics.median(pairs):.3f} [{min(t.values()) / min(base.values()):.3f}]"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=30, help="steps per call (default 30)")
    parser.add_argument("--calls", type=int, default=2, help="timed calls per process")
    parser.add_argument("--worker", choices=("check", "time"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.steps, args.calls)
        return 0
    from timing import cpu_info
    import jax
    import jaxlib
    cpu = f"{cpu_info()}; {len(os.sched_getaffinity(0))} cores"
    print(f"{cpu}; jax {jax.__version__}, jaxlib {jaxlib.__version__}")
    check_flags()
    with tempfile.TemporaryDirectory() as cache:
        distinct, same_as = check_programs(cache, args.steps)
        check_isa()
        times, losses = time_programs(cache, list(distinct), args.rounds, args.steps, args.calls)
    ref = distinct["default"]["losses"]
    print(f"\n{cpu}: ms per step, median [min] over {args.rounds} rounds; ratio to the default "
          "in the same column (median of per-round ratios [ratio of mins]; < 1 faster)")
    print(f"  {'flag set':44s} {'native':>16s} {'ratio':>13s} {'AVX2':>16s} {'ratio':>13s}  "
          "losses at AVX2")
    flags_of = dict(VARIANTS)
    for name in distinct:
        cells = [c for isa in ("native", "AVX2")
                 for c in cell(times[(name, isa)], times[("default", isa)])]
        loss = compare_losses(losses[(name, "AVX2")], ref) if (name, "AVX2") in losses else ""
        print(f"  {name:44s} {cells[0]:>16s} {cells[1]:>13s} {cells[2]:>16s} {cells[3]:>13s}  "
              f"{loss}\n      XLA_FLAGS={flags_of[name] or '(none)'}")
    for name, first in same_as.items():
        print(f"  {name:44s} the same program as '{first}'\n      XLA_FLAGS={flags_of[name]}")
    _, isa_ratio = cell(times[("default", "AVX2")], times[("default", "native")])
    print(f"  the default at AVX2 / natively: {isa_ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
