"""The child process of `cli_time.py`: the Clojure run of `python -m funcnn` (the steps of
`funcnn.__main__.clusters`, with the CLI's defaults) one phase at a time, each phase's wall
time and compile time (tracing, lowering and XLA's compile, or warm, the cache read) summed by
a `jax.monitoring` listener; printed as `PHASES {phase: [wall s, compile s]}` in JSON.

    python benchmarks/cli_phases.py quiet|default OUT_DIR

Only the standard library is imported before the clock starts: `import jax` and `import
funcnn` are phases of their own.
"""
import json
import os
import sys
import time


def main(quiet: bool, out_dir: str) -> None:
    start = time.perf_counter()
    import jax
    times = {"import jax": [time.perf_counter() - start, 0.0]}
    from timing import CompileClock                         # not funcnn: its import is timed
    clock = CompileClock()

    def phase(name, f):
        result, wall, xla, rest = clock.measure(lambda: jax.block_until_ready(f()))
        times[name] = [wall, xla + rest]                    # wait for the device to finish
        return result

    fn = phase("import funcnn", lambda: __import__("funcnn"))
    from funcnn.__main__ import _use_compilation_cache
    from funcnn.backend import quick_compile
    quick_compile()                                         # as the CLI does for clusters
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


if __name__ == "__main__":
    main(sys.argv[1] == "quiet", sys.argv[2])
