"""Before and after: the training step of the MLP, the small CNN and fashion-cnn at two
commits, interleaved in one run (this machine is shared and noisy: a ratio, never a bare time).

    python benchmarks/ab.py 87c7522 HEAD            # 3 rounds, old then new in each
    python benchmarks/ab.py 87c7522 HEAD --rounds 5

Each commit is checked out into a temporary git worktree; each round runs one fresh process per
commit, which times `fit` at batch 128 on 3,840 random Fashion-MNIST-shaped rows (3 calls after
a warm-up; the best). The table gives each row's min over the rounds in ms per step and the
ratio new / old (< 1: the new commit is faster), with the CPU it ran on.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

from timing import cpu_info

MEASURE = r"""
import sys, time, jax, numpy as np, funcnn as fn
from funcnn.examples import fashion_cnn
L, M = fn.layers, fn.math
small = fn.model.network(L.serial(
    L.Reshape((28, 28, 1)), L.Conv2D(16, (3, 3), padding="SAME"), M.relu, L.MaxPool2D((2, 2)),
    L.Conv2D(32, (3, 3), padding="SAME"), M.relu, L.MaxPool2D((2, 2)), L.Flatten(),
    L.Dense(128, M.relu), L.Dense(10)), input_shape=(784,), loss=fn.losses.softmax_cross_entropy)
mlp = fn.model.mlp([784, 128, 10], hidden=M.relu, output=M.identity,
                   loss=fn.losses.softmax_cross_entropy, init=fn.model.he())
rng = np.random.default_rng(0)
x = rng.random((3840, 784), dtype=np.float32)
ds = fn.data.Dataset(x, np.eye(10, dtype=np.float32)[rng.integers(0, 10, 3840)])
for name, net, epochs in (("mlp", mlp, 30), ("small_cnn", small, 2),
                          ("fashion_cnn", fashion_cnn.cnn(), 2)):
    p = fn.model.init(jax.random.key(0), net)
    run = lambda e: fn.train.fit(jax.random.key(1), net, p, ds, epochs=e, batch_size=128,
                                 optimizer=fn.optim.adam(1e-3), verbose=False)
    run(1)                                        # compile
    seconds = []
    for _ in range(3):
        start = time.perf_counter()
        jax.block_until_ready(run(epochs))
        seconds.append(time.perf_counter() - start)
    print(name, min(seconds) / (30 * epochs) * 1000, flush=True)   # 30 steps an epoch
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    root = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True,
                          text=True, check=True).stdout.strip()
    times = {"old": {}, "new": {}}
    with tempfile.TemporaryDirectory() as tmp:
        trees = {}
        for side in ("old", "new"):
            trees[side] = os.path.join(tmp, side)
            subprocess.run(["git", "-C", root, "worktree", "add", "-q", "--detach",
                            trees[side], getattr(args, side)], check=True)
        try:
            for r in range(args.rounds):
                for side in ("old", "new"):
                    out = subprocess.run([sys.executable, "-c", MEASURE], cwd=trees[side],
                                         env=dict(os.environ, PYTHONPATH=trees[side]),
                                         capture_output=True, text=True, check=True).stdout
                    for line in out.split("\n"):
                        if line:
                            name, ms = line.split()
                            times[side].setdefault(name, []).append(float(ms))
                    print(f"round {r + 1} {side}: {out.split()}", flush=True)
        finally:
            for tree in trees.values():
                subprocess.run(["git", "-C", root, "worktree", "remove", "--force", tree])
    print(f"\n{cpu_info()}; {args.old} -> {args.new}, min of {args.rounds} rounds, ms per step")
    for name in times["old"]:
        old, new = min(times["old"][name]), min(times["new"][name])
        print(f"  {name:12s} {old:8.3f} -> {new:8.3f}  new/old {new / old:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
