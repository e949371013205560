"""Data parallel over a 1-D device mesh: the same losses as on one device. JAX fixes the
device count at start-up, so the run happens in a child process with 4 virtual CPUs."""
import os
import subprocess
import sys
import textwrap

import pytest
from conftest import environ_of_a_user

CHILD = textwrap.dedent("""
    import jax, numpy as np, funcnn as fn
    assert jax.device_count() == 4, jax.devices()
    ds = fn.data.gaussian_clusters(jax.random.key(0), 25)        # 50 rows: not a multiple of 4
    net = fn.model.mlp([2, 8, 2], hidden=fn.math.sigmoid, output=fn.math.sigmoid,
                       loss=fn.losses.mse)
    params = fn.model.init(jax.random.key(1), net)
    mesh = jax.make_mesh((4,), ("batch",))
    one, h1 = fn.train.fit(jax.random.key(2), net, params, ds, ds, epochs=5, batch_size=7,
                           verbose=False)
    four, h4 = fn.train.fit(jax.random.key(2), net, params, ds, ds, epochs=5, batch_size=7,
                            mesh=mesh, verbose=False)
    for name in h1:
        np.testing.assert_allclose(h4[name], h1[name], rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree.leaves(four), jax.tree.leaves(one)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    hlo = fn.train._fit.lower(jax.random.key(3), params, (), ds, ds, np.float32(0.5),
                              fn.history.clock(), net=net, epochs=2, start_epoch=0,
                              batch_size=7, optimizer=None, probe=None,
                              mesh=fn.parallel.check_mesh(mesh), verbose=0, ensemble=False,
                              progress_every=0, classes=True).compile().as_text()
    assert "all-reduce" in hlo                                  # XLA's SPMD did the reduce

    # BatchNorm over four devices normalises with the global batch's statistics: as one device
    L, M = fn.layers, fn.math
    cnn = fn.model.network(L.serial(L.Conv2D(4, (3, 3)), M.relu, L.BatchNorm(), L.Flatten(),
                                    L.Dense(3)), (6, 6, 2), fn.losses.softmax_cross_entropy)
    kx, ky = jax.random.split(jax.random.key(5))
    images = fn.data.Dataset(jax.random.normal(kx, (96, 6, 6, 2)),
                             fn.data.one_hot(jax.random.randint(ky, (96,), 0, 3), 3))
    p0 = fn.model.init(jax.random.key(6), cnn)
    how = dict(epochs=2, batch_size=16, optimizer=fn.optim.sgd(0.1), verbose=False)
    one, h1 = fn.train.fit(jax.random.key(7), cnn, p0, images, images, **how)
    four, h4 = fn.train.fit(jax.random.key(7), cnn, p0, fn.parallel.shard_rows(images, mesh),
                            images, mesh=mesh, **how)
    for name in h1:
        np.testing.assert_allclose(h4[name], h1[name], rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree.leaves(four), jax.tree.leaves(one)):   # running stats included
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    print("sharded ok", float(h4["train_loss"][-1]))

    # batches of 14 over 4 devices are padded to 16: BatchNorm counts the 14 real rows only
    how = dict(epochs=2, batch_size=14, optimizer=fn.optim.sgd(0.1), verbose=False)
    one, h1 = fn.train.fit(jax.random.key(7), cnn, p0, images, images, **how)
    four, h4 = fn.train.fit(jax.random.key(7), cnn, p0, images, images, mesh=mesh, **how)
    for a, b in zip(jax.tree.leaves(four), jax.tree.leaves(one)):   # running stats included
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    print("padding ok")

    # Dropout on a 2-device mesh: each row's mask is the one it draws on one device, so the
    # referee agrees with the hand gradient of a batch split over the devices, and fit on
    # the mesh (batches of 13, padded to 14) trains as on one device
    from jax.sharding import Mesh, NamedSharding, PartitionSpec
    two = Mesh(np.array(jax.devices()[:2]), ("batch",))
    drop = fn.model.network(L.serial(L.Dense(16), M.relu, L.Dropout(0.5), L.Dense(3)), (6,),
                            fn.losses.softmax_cross_entropy)
    kx, ky = jax.random.split(jax.random.key(10))
    with jax.enable_x64(True):
        batch = fn.data.Dataset(jax.random.normal(kx, (64, 6), np.float64),
                                fn.data.one_hot(jax.random.randint(ky, (64,), 0, 3), 3,
                                                np.float64))
        split = jax.device_put(batch, NamedSharding(two, PartitionSpec("batch")))
        pd = fn.model.init(jax.random.key(11), drop, np.float64)
        report = fn.gradcheck.gradcheck(drop, pd, split, key=jax.random.key(12))
        assert report.passed, report
    batch = fn.data.Dataset(*(np.asarray(v, np.float32) for v in batch))
    pd = fn.model.init(jax.random.key(11), drop)
    how = dict(epochs=2, batch_size=13, lr=0.1, verbose=False)
    one, h1 = fn.train.fit(jax.random.key(13), drop, pd, batch, **how)
    on_two, h2 = fn.train.fit(jax.random.key(13), drop, pd, batch, mesh=two, **how)
    for a, b in zip(jax.tree.leaves(on_two), jax.tree.leaves(one)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    print("dropout ok")

    # an ensemble split by network over the four devices: each network as on one device
    keys = jax.random.split(jax.random.key(8), 8)
    many = jax.vmap(lambda k: fn.model.init(k, net))(jax.random.split(jax.random.key(9), 8))
    how = dict(epochs=3, batch_size=7, optimizer=fn.optim.adam(0.05), verbose=False)
    one, h1 = fn.train.fit_many(keys, net, many, ds, ds, **how)
    four, h4 = fn.train.fit_many(keys, net, many, ds, ds, mesh=mesh, **how)
    assert {d.id for d in jax.tree.leaves(four)[0].devices()} == {0, 1, 2, 3}
    for name in h1:                         # float32: each device's code rounds its own way
        np.testing.assert_allclose(h4[name], h1[name], rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree.leaves(four), jax.tree.leaves(one)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    k_s, p_s, d_s, _ = fn.parallel.split_networks(fn.parallel.check_mesh(mesh), keys, many, ds,
                                                   None)
    hlo = fn.train._fit.lower(k_s, p_s, (), d_s, None, np.float32(0.5), fn.history.clock(),
                              net=net, epochs=2, start_epoch=0, batch_size=7, optimizer=None,
                              probe=None, mesh=fn.parallel.check_mesh(mesh), verbose=0,
                              ensemble=True, progress_every=0, classes=True).compile().as_text()
    assert "f32[2,2,8]" in hlo and "all-reduce" not in hlo and "all-gather" not in hlo
    try:                                                        # 6 networks on 4 devices
        fn.train.fit_many(keys[:6], net, jax.tree.map(lambda v: v[:6], many), ds, mesh=mesh)
    except fn.checks.InputError as e:
        assert "multiple of 4 (e.g. 8)" in str(e), e
    else:
        raise AssertionError("6 networks over 4 devices were accepted")
    print("ensemble ok")
""")


@pytest.mark.slow
def test_four_devices_give_the_losses_of_one():
    env = environ_of_a_user(XLA_FLAGS="--xla_force_host_platform_device_count=4",
                            JAX_PLATFORMS="cpu")
    r = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "sharded ok" in r.stdout and "ensemble ok" in r.stdout
    assert "padding ok" in r.stdout and "dropout ok" in r.stdout


def test_a_mesh_must_be_a_mesh():
    import jax
    import pytest
    import funcnn as fn
    net = fn.model.mlp([2, 2], hidden=fn.math.relu, output=fn.math.sigmoid, loss=fn.losses.mse)
    ds = fn.data.gaussian_clusters(jax.random.key(0), 4)
    with pytest.raises(TypeError, match="1-D jax.sharding.Mesh"):
        fn.train.fit(jax.random.key(1), net, fn.model.init(jax.random.key(2), net), ds,
                     mesh=jax.devices())
