"""`python -m funcnn` (or `funcnn`): the Clojure run, end to end, and the other examples.

    python -m funcnn                  # = python -m funcnn clusters: the Clojure network
    python -m funcnn clusters --epochs 40 --lr 0.3 --out images/run2.svg
    python -m funcnn circles          # DotCSV's rings, and the training as an animation
    python -m funcnn fashion-mnist-numpy --recipe sound
    python -m funcnn sequential --seconds 20
    python -m funcnn regression       # real targets: a noisy sin(3x), mse; the fit drawn

The flow is the original's: data -> model -> training with metrics -> picture.
"""
from __future__ import annotations

import argparse
import os
import sys
from functools import partial

from funcnn import backend, checks
from funcnn.checks import InputError, InputTypeError


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
        backend.quick_compile()                    # XLA flags: set before jax starts XLA
    if not args.no_cache:
        _use_compilation_cache()
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


def _flag(parse, expected: str, check):
    """An argparse type: the word as `parse` reads it (int, float), then `check`ed by
    funcnn.checks; either fault becomes argparse's message ("argument --lr: must be finite
    and > 0, got -1.0"), which names the flag, so the check gets the name ""."""
    def convert(text: str):
        try:
            v = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        try:
            return check("", v)
        except (InputError, InputTypeError) as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    return convert


_positive_int = _flag(int, "a whole number", partial(checks.integer, least=1))
_seed = _flag(int, "a whole number", partial(checks.integer, least=0, most=2**63 - 1))
_positive_float = _flag(float, "a number", partial(checks.number, positive=True))


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
    """The command: main(), then an exit without jax's teardown (see funcnn.backend). A test
    calls main() instead."""
    backend.exit_skipping_teardown(main())



if __name__ == "__main__":
    run()
