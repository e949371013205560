"""One process of tests/test_multihost.py: trains three networks data-parallel on the global
data set made from this process's rows, and (process 0) saves what it got to OUT.npz.

    python tests/multihost_worker.py OUT PROCESS_ID NUM_PROCESSES PORT   # one of several
    python tests/multihost_worker.py OUT                                 # alone, all devices
"""
import sys

import jax
import numpy as np

if len(sys.argv) > 2:
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{sys.argv[4]}",
                               num_processes=int(sys.argv[3]), process_id=int(sys.argv[2]),
                               initialization_timeout=60, heartbeat_timeout_seconds=20)
import funcnn as fn
from funcnn import layers as L

M = fn.math
me, count = jax.process_index(), jax.process_count()
mesh = jax.make_mesh((jax.device_count(),), ("batch",))


def mine(ds):
    """This process's block of rows, spread over the mesh as one global data set."""
    size = ds.x.shape[0] // count
    rows = slice(me * size, (me + 1) * size)
    return fn.parallel.shard_rows(fn.data.Dataset(np.asarray(ds.x)[rows],
                                                  np.asarray(ds.y)[rows]), mesh)


def random_set(key, n, shape, k=10):
    kx, ky = jax.random.split(key)
    return fn.data.Dataset(jax.random.uniform(kx, (n, *shape)),
                           fn.data.one_hot(jax.random.randint(ky, (n,), 0, k), k))


# (BatchNorm after the ReLU: right after a convolution it would leave the conv's bias without
# a gradient, and Adam would move that bias by the rounding noise, which differs with the
# order of a sum over devices.)
NETS = {   # name: (net, data, fit's arguments)
    "clojure": (fn.model.mlp([2, 8, 2], hidden=M.sigmoid, output=M.sigmoid, loss=fn.losses.mse),
                fn.data.gaussian_clusters(jax.random.key(0), 64), dict(lr=0.5, batch_size=16)),
    "mlp": (fn.model.mlp([784, 128, 10], hidden=M.relu, output=M.identity,
                         loss=fn.losses.softmax_cross_entropy),
            random_set(jax.random.key(1), 512, (784,)),
            dict(optimizer=fn.optim.adam(1e-3), batch_size=64)),
    "cnn_batchnorm": (fn.model.network(L.serial(L.Conv2D(4, (3, 3), padding="SAME"), M.relu,
                                                L.BatchNorm(), L.MaxPool2D((2, 2)),
                                                L.Flatten(), L.Dense(10)),
                                       (8, 8, 1), fn.losses.softmax_cross_entropy),
                      random_set(jax.random.key(2), 256, (8, 8, 1)),
                      dict(optimizer=fn.optim.adam(1e-2), batch_size=32)),
}

found = {}
for name, (net, ds, how) in NETS.items():
    params = fn.model.init(jax.random.key(3), net)
    params, history = fn.train.fit(jax.random.key(4), net, params, mine(ds), mine(ds),
                                   epochs=3, mesh=mesh, verbose=False, **how)
    for k, v in history.items():
        found[f"{name}/{k}"] = np.asarray(v)
    for i, leaf in enumerate(jax.tree.leaves(params)):
        found[f"{name}/param{i}"] = np.asarray(leaf)
if me == 0:
    np.savez(sys.argv[1], **found)
print(f"process {me} done", flush=True)
if count > 1:
    jax.distributed.shutdown()
