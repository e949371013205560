"""`python -m funcnn` (or `funcnn`): the Clojure run, end to end, and the other examples.

    python -m funcnn                  # = python -m funcnn clusters: the Clojure network
    python -m funcnn clusters --epochs 40 --lr 0.3 --out images/run2.svg
    python -m funcnn circles          # DotCSV's rings, and the training as an animation
    python -m funcnn fashion-mnist-numpy --recipe sound
    python -m funcnn sequential --seconds 20

The flow is the original's: data -> model -> training with metrics -> picture.
"""
from __future__ import annotations

import argparse
import os
import sys

def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, commands = _parser()
    if argv in (["-h"], ["--help"]):               # the commands, then the default's flags
        print(parser.format_help())
        print(commands["clusters"].format_help())
        return 0
    if not argv or (argv[0] not in commands and argv[0].startswith("-")):
        argv = ["clusters", *argv]                 # no command: the Clojure run
    args = parser.parse_args(argv)
    if args.quick_compile:
        _quick_compile()
    if not args.no_cache:
        _use_compilation_cache()
    from funcnn.checks import InputError, InputTypeError
    from funcnn.train import TrainingDiverged
    try:
        return args.run(args)
    except (InputError, InputTypeError, OSError) as e:   # bad input or an unwritable --out
        print(f"funcnn: error: {e}", file=sys.stderr)
        return 2
    except TrainingDiverged as e:
        print(f"funcnn: {e}", file=sys.stderr)
        return 1


def _parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    from funcnn.examples import EXAMPLES
    parser = argparse.ArgumentParser(
        prog="python -m funcnn",
        description="funcnn: neural networks as pure functions on JAX. With no command, "
                    "runs 'clusters', the Clojure network, end to end.")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    commands = {}
    for name, example in EXAMPLES.items():
        p = sub.add_parser(name, help=example.HELP, description=example.DESCRIPTION)
        out = example.add_arguments(p, _positive_int, _positive_float)
        _common(p, out)
        p.set_defaults(run=example.run, quick_compile=getattr(example, "QUICK_COMPILE", False))
        commands[name] = p
    return parser, commands


def _common(p: argparse.ArgumentParser, out: str) -> None:
    p.add_argument("--seed", type=_seed, default=1337, help="random seed (default 1337)")
    p.add_argument("--out", default=out, help=f"where to write the SVG picture (default {out})")
    p.add_argument("--quiet", action="store_true", help="no line per epoch")
    p.add_argument("--no-cache", action="store_true", help="do not keep compiled programs in "
                   "~/.cache/funcnn (the cache makes the second run start faster)")


def _whole(text: str, lo: int, hi: int | None = None) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if v < lo or (hi is not None and v > hi):
        raise argparse.ArgumentTypeError(f"must be >= {lo}, got {v}" if hi is None else
                                         f"must be between {lo} and {hi}, got {v}")
    return v


def _positive_int(text: str) -> int:
    return _whole(text, 1)


def _seed(text: str) -> int:
    return _whole(text, 0, 2**63 - 1)


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (v > 0 and v < float("inf")):
        raise argparse.ArgumentTypeError(f"must be finite and > 0, got {text}")
    return v


# XLA flags for a network that trains in milliseconds, where compiling is nearly all of a run:
# no LLVM optimisation, and XLA's older fusion emitters, which compile in half the time. The
# Clojure run's cold start drops from about 2.7 s to 2.0 s on a 2-core machine, its training
# (0.05 s) and its numbers unchanged; a Fashion-MNIST epoch would run ~20% slower, so only the
# small examples ask for them. XLA aborts on a flag it does not know, so they are set only
# for the jaxlib releases they were checked on.
QUICK_COMPILE_FLAGS = {"xla_backend_optimization_level": "0",
                       "xla_cpu_use_fusion_emitters": "false"}
QUICK_COMPILE_JAXLIB = ("0.10.",)


def _quick_compile() -> None:
    """Add QUICK_COMPILE_FLAGS to XLA_FLAGS (before JAX starts its backend); a flag the user
    set wins."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        if not version("jaxlib").startswith(QUICK_COMPILE_JAXLIB):
            return
    except PackageNotFoundError:
        return
    flags = os.environ.get("XLA_FLAGS", "")
    extra = [f"--{name}={value}" for name, value in QUICK_COMPILE_FLAGS.items()
             if name not in flags]
    os.environ["XLA_FLAGS"] = " ".join([flags, *extra]).strip()


def _use_compilation_cache() -> None:
    """Keep compiled programs on disk: XLA compiling is most of a first run's time."""
    import jax
    cache = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                         "funcnn", "xla")
    try:
        os.makedirs(cache, exist_ok=True)
    except OSError:
        return                                     # read-only home: run without a cache
    jax.config.update("jax_compilation_cache_dir", cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def run() -> None:
    """The command: main(), then a hard exit once its output is flushed. Tearing jax and
    XLA down in an orderly way takes 0.3 s of a 1.6 s run, and all there is to keep (the
    pictures, the compilation cache) is on disk by then. A test calls main() instead."""
    code = main()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:                            # a closed pipe (| head): nothing to keep
            pass
    os._exit(code)


if __name__ == "__main__":
    run()
