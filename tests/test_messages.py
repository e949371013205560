"""Wrong arguments that used to fail inside JAX or Python now raise funcnn's own message,
naming the argument and the fix (funcnn.checks.InputError / InputTypeError)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnn as fn
from funcnn.checks import InputError, InputTypeError

L = fn.layers


@pytest.fixture(scope="module")
def small():
    net = fn.model.network(L.serial(L.Dense(8), fn.math.relu, L.Dense(3)), input_shape=(4,),
                           loss=fn.losses.softmax_cross_entropy)
    params = fn.model.init(jax.random.key(0), net)
    x = np.random.default_rng(0).random((6, 4), dtype=np.float32)
    y = np.eye(3, dtype=np.float32)[[0, 1, 2, 0, 1, 2]]
    return net, params, fn.data.Dataset(x, y)


class TensorLike:
    """Stands in for a torch tensor: it has ndim and shape but is no array JAX knows."""
    ndim = 2
    shape = (6, 4)


@pytest.mark.parametrize("x, match", [
    (TensorLike(), r"^x must be a NumPy or JAX array .*got .*TensorLike; pass .*np\.asarray"),
    (np.array([["a"] * 4] * 6), r"^x must hold real numbers .*got dtype <U1; convert it"),
    (np.full((6, 4), None, dtype=object), r"^x must hold real numbers .*got dtype object"),
    (np.ones((6, 4), np.complex64), r"^x must hold real numbers .*got dtype complex64"),
])
def test_forward_refuses_x_that_is_not_a_real_array(small, x, match):
    net, params, _ = small
    with pytest.raises(InputTypeError, match=match):
        fn.model.forward(net, params, x)


def test_forward_accepts_real_arrays(small):
    net, params, ds = small
    for x in (ds.x, jnp.asarray(ds.x), ds.x.astype(np.float16), (ds.x > 0.5), np.ones((6, 4), int)):
        assert fn.model.forward(net, params, x).shape == (6, 3)


def test_forward_tells_how_to_convert_a_torch_tensor(small):
    torch = pytest.importorskip("torch")
    net, params, _ = small
    with pytest.raises(InputTypeError, match=r"^x must be a NumPy .*x\.detach\(\)\.cpu\(\)\.numpy\(\)"):
        fn.model.forward(net, params, torch.zeros(6, 4))


@pytest.mark.parametrize("lr", [jnp.array([0.1, 0.2]), np.array([0.1]), [0.1, 0.2]])
def test_a_vector_lr_is_refused(small, lr):
    net, params, ds = small
    with pytest.raises(InputTypeError, match=r"^lr \(learning rate\) must be a number"):
        fn.model.grad_step(net, params, ds, lr)
    with pytest.raises(InputTypeError, match=r"^lr \(learning rate\) must be a number"):
        fn.train.fit(jax.random.key(1), net, params, ds, lr=lr, epochs=1, verbose=False)


def test_a_0d_lr_still_passes_the_check():
    fn.model.check_lr(jnp.array(0.1))
    fn.model.check_lr(np.float32(0.1))


@pytest.mark.parametrize("opt", [fn.optim.adam, fn.optim.sgd, fn.optim.momentum])
def test_an_optimizer_class_not_called_is_refused(small, opt):
    net, params, ds = small
    with pytest.raises(InputTypeError, match=r"^optimizer must be an optimizer such as "
                       r"funcnn\.optim\.adam\(lr=1e-3\), got the class \w+ itself; call it"):
        fn.train.fit(jax.random.key(1), net, params, ds, optimizer=opt, epochs=1, verbose=False)
    with pytest.raises(InputTypeError, match=r"^opt \(the optimizer to wrap\) must be an "
                       r"optimizer .* call it"):
        fn.optim.weight_decay(opt, 1e-3)


@pytest.mark.parametrize("dtype", [jnp.int32, "int8", bool, jnp.complex64, "no-such-type"])
def test_init_refuses_a_dtype_that_is_not_floating(small, dtype):
    net, _, _ = small
    with pytest.raises(InputTypeError, match=r"^dtype must be a floating-point dtype"):
        fn.model.init(jax.random.key(0), net, dtype=dtype)


@pytest.mark.slow
def test_init_accepts_floating_dtypes(small):
    net, _, _ = small
    for dtype in ("float16", jnp.bfloat16, jnp.float32):
        leaves = jax.tree.leaves(fn.model.init(jax.random.key(0), net, dtype=dtype))
        assert {leaf.dtype for leaf in leaves} == {jnp.dtype(dtype)}


@pytest.mark.parametrize("below", ["ckpt.npz", "deeper/ckpt.npz"])
def test_save_under_a_file_names_path(small, tmp_path, below):
    net, params, _ = small
    (tmp_path / "afile").write_text("not a directory")
    target = tmp_path / "afile" / below
    with pytest.raises(InputError, match=r"^path .*afile.* cannot be written: .*afile exists "
                       r"and is not a directory"):
        fn.io.save(target, params, net)
    assert (tmp_path / "afile").read_text() == "not a directory"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_save_still_makes_missing_directories(small, tmp_path):
    net, params, _ = small
    path = fn.io.save(tmp_path / "new" / "dir" / "ckpt.npz", params, net)
    assert path.is_file()
