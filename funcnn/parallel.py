"""Data parallelism: one network's batches split over devices, on one host or several; and an
ensemble's networks split over devices.

Contract: a mesh is a 1-D `jax.sharding.Mesh` (`jax.make_mesh((jax.device_count(),),
("batch",))`). Training with one (`fit(..., mesh=mesh)`) keeps the params whole on every
device and splits each batch's rows over the devices; XLA (JAX's SPMD partitioner) runs each
device's share and all-reduces what is summed over rows: the gradient, and BatchNorm's batch
statistics, which are therefore those of the global batch. Data may be whole on every
device, or spread over the devices by rows (`shard_rows`): then each step's batch is gathered
from the devices that hold its rows, and with several hosts (processes after
`jax.distributed.initialize`) each host holds only its own rows. Either way every epoch
shuffles all rows with one permutation, so the numbers are those of one device.
An ensemble with one (`fit_many(..., mesh=mesh)`) is split by network instead: each device
trains its own networks on the whole data, and nothing passes between devices.
"""
from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from funcnn.checks import InputError, InputTypeError
from funcnn.data import Dataset


def check_mesh(mesh):
    """A 1-D mesh, its axis made Auto (XLA places the work; jax.make_mesh gives Explicit)."""
    if mesh is None:
        return None
    if not (isinstance(mesh, Mesh) and len(mesh.axis_names) == 1):
        raise InputTypeError("mesh must be a 1-D jax.sharding.Mesh, e.g. "
                             "jax.make_mesh((jax.device_count(),), ('batch',)); got "
                             f"{type(mesh).__name__}")
    return Mesh(mesh.devices, mesh.axis_names, axis_types=(jax.sharding.AxisType.Auto,))


def by_rows(mesh) -> NamedSharding:
    """Rows split over the mesh's devices, in device order."""
    return NamedSharding(mesh, PartitionSpec(mesh.axis_names[0]))


def shard_rows(ds: Dataset, mesh) -> Dataset:
    """This process's rows -> one global Dataset whose rows are split over `mesh`'s devices.

    With several processes (hosts), each passes its own rows, the same number on each, and
    none ever holds another's; the global Dataset has them all, process 0's first. On one
    process it spreads `ds` over the devices. Each process's rows must split evenly over its
    devices in the mesh. Every process must call it (the row counts are compared).
    """
    mesh = check_mesh(mesh)
    if mesh is None:
        raise InputTypeError("shard_rows needs a mesh, e.g. jax.make_mesh((jax.device_count(),), "
                             "('batch',))")
    if not (isinstance(ds, tuple) and len(ds) == 2):
        raise InputTypeError(f"ds must be a Dataset(x, y) of this process's rows, got "
                             f"{type(ds).__name__}")
    if not all(getattr(v, "is_fully_addressable", True) for v in ds):
        raise InputError("ds is already spread over several processes; pass each process's "
                         "own rows (NumPy arrays, say)")
    x, y = np.asarray(ds.x), np.asarray(ds.y)
    n = x.shape[0]
    here = sum(d.process_index == jax.process_index() for d in mesh.devices.flat)
    if here == 0:
        raise InputError(f"the mesh has none of process {jax.process_index()}'s devices; build "
                         "it from jax.devices(), which lists every process's")
    if n != y.shape[0] or n == 0 or n % here:
        raise InputError(f"ds has {n} rows of x and {y.shape[0]} of y; each process needs the "
                         f"same number of rows in both, a multiple of its {here} devices in the "
                         f"mesh: drop {n % here} rows, e.g. ds.x[:{n - n % here}]")
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        counts = np.asarray(multihost_utils.process_allgather(np.int32(n)))
        if (counts != n).any():
            raise InputError(f"the processes hold {counts.tolist()} rows; each must pass the "
                             "same number (drop the extra rows)")
    rows = by_rows(mesh)
    return Dataset(*(jax.make_array_from_process_local_data(rows, v) for v in (x, y)))


def place(ds: Dataset, mesh) -> Dataset:
    """`ds` with any row-split arrays moved onto `mesh` (same devices and layout, Auto axis):
    arrays whole on one device stay as they are."""
    def onto(v):
        s = getattr(v, "sharding", None)
        if isinstance(s, NamedSharding) and s.mesh != mesh and not s.is_fully_replicated:
            if set(s.mesh.devices.flat) != set(mesh.devices.flat):
                raise InputError("the data are spread over other devices than the mesh's; "
                                 "make them with funcnn.parallel.shard_rows(ds, mesh)")
            return jax.device_put(v, NamedSharding(mesh, s.spec))
        return v
    return Dataset(*(onto(v) for v in ds))


def split_networks(mesh, keys, params, train: Dataset, test: Dataset | None):
    """An ensemble over the mesh's devices: the networks' keys and params (a leading axis of m)
    split by network, the data whole on every device. Each device then trains its own
    networks; XLA's SPMD finds nothing to communicate."""
    m, size = keys.shape[0], mesh.size
    if m % size:
        raise InputError(f"{m} networks do not split evenly over the mesh's {size} devices: "
                         f"train a multiple of {size} (e.g. {m + size - m % size}) or use a "
                         "smaller mesh")
    if not all(getattr(v, "is_fully_addressable", True)
               for ds in (train, test) if ds is not None for v in ds):
        raise InputError("fit_many with a mesh needs every row on this process: the data are "
                         "spread over several processes")
    whole = NamedSharding(mesh, PartitionSpec())
    keys, params = jax.device_put((keys, params), by_rows(mesh))
    return keys, params, jax.device_put(train, whole), jax.device_put(test, whole)


def whole_on_every_device(mesh, tree):
    """Inside a compiled run: gather `tree`'s leaves whole onto every device (for printing)."""
    return jax.lax.with_sharding_constraint(tree, NamedSharding(mesh, PartitionSpec()))


def split_batch(mesh, batch, w, params):
    """Ask XLA to split the batch's rows over the mesh and to keep the params whole on every
    device; it then runs each device's share and all-reduces the gradient sums (JAX's SPMD)."""
    constrain = jax.lax.with_sharding_constraint
    return (constrain(batch, by_rows(mesh)), constrain(w, by_rows(mesh)),
            whole_on_every_device(mesh, params))
