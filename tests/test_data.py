"""Data: draws by hand, scaling, one-hot, the keyed split and the per-epoch shuffle."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import XLA_DEFAULTS

import funcnn as fn


def test_box_muller_draws_standard_normals():
    z = np.asarray(fn.data.box_muller(jax.random.key(0), 200_001))
    assert z.shape == (200_001,) and np.isfinite(z).all()
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1.0) < 0.01
    assert abs((np.abs(z) < 1.0).mean() - 0.6827) < 0.01      # the 68 % rule


def test_gaussian_clusters_shape_range_and_labels():
    ds = fn.data.gaussian_clusters(jax.random.key(1), n_per_class=400)
    assert ds.x.shape == (800, 2) and ds.y.shape == (800, 2)
    np.testing.assert_allclose(ds.x.min(axis=0), [0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(ds.x.max(axis=0), [1.0, 1.0], atol=1e-6)
    np.testing.assert_array_equal(ds.y.sum(axis=0), [400, 400])
    # class 1 sits up and to the right of class 0
    assert bool((ds.x[400:].mean(axis=0) > ds.x[:400].mean(axis=0) + 0.25).all())


@pytest.mark.slow
def test_scale_maps_new_points_like_the_data():
    raw, scale = fn.data.gaussian_clusters_raw(jax.random.key(2), n_per_class=50)
    scaled = fn.data.gaussian_clusters(jax.random.key(2), n_per_class=50)
    np.testing.assert_allclose(scale(raw.x), scaled.x, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(scale.invert(scale(raw.x)), raw.x, rtol=1e-5, atol=1e-5)


def test_circles_are_two_rings():
    ds = fn.data.circles(jax.random.key(3), n=500, factor=0.5, noise=0.0)
    r = np.linalg.norm(np.asarray(ds.x), axis=1)
    y = np.asarray(ds.y[:, 0])
    assert ds.x.shape == (500, 2) and ds.y.shape == (500, 1)
    np.testing.assert_allclose(r[y == 0], 1.0, rtol=1e-6)
    np.testing.assert_allclose(r[y == 1], 0.5, rtol=1e-6)
    noisy = fn.data.circles(jax.random.key(4), n=500, noise=0.05)
    spread = np.linalg.norm(np.asarray(noisy.x), axis=1)[np.asarray(noisy.y[:, 0]) == 0].std()
    assert 0.02 < spread < 0.08
    assert fn.data.circles(jax.random.key(5), n=11, one_hot_labels=True).y.shape == (11, 2)


def test_one_hot():
    np.testing.assert_array_equal(fn.data.one_hot(jnp.array([2, 0]), 3), [[0, 0, 1], [1, 0, 0]])
    np.testing.assert_array_equal(fn.data.one_hot([[1], [0]], 2), [[[0, 1]], [[1, 0]]])


def test_split_is_a_keyed_partition():
    ds = fn.data.Dataset(jnp.arange(20.0)[:, None], fn.data.one_hot(jnp.arange(20) % 2, 2))
    train, test = fn.data.split(jax.random.key(6), ds, train_fraction=0.8)
    assert train.x.shape == (16, 1) and test.x.shape == (4, 1)
    rows = np.concatenate([train.x[:, 0], test.x[:, 0]])
    np.testing.assert_array_equal(np.sort(rows), np.arange(20.0))   # each row exactly once
    np.testing.assert_array_equal(train.y[:, 1], train.x[:, 0] % 2)   # labels stay with rows
    again, _ = fn.data.split(jax.random.key(6), ds)
    other, _ = fn.data.split(jax.random.key(7), ds)
    np.testing.assert_array_equal(again.x, train.x)                  # same key, same split
    assert not np.array_equal(other.x, train.x)                      # other key, other split


def test_batches_use_every_row_once_and_pad_with_weight_zero():
    rows, w = fn.data.batches(jax.random.key(8), n=10, batch_size=4)
    assert rows.shape == (3, 4) and w.shape == (3, 4)
    real = np.asarray(rows)[np.asarray(w) == 1]
    np.testing.assert_array_equal(np.sort(real), np.arange(10))
    assert float(w.sum()) == 10.0 and float(w[-1].sum()) == 2.0


def test_two_epochs_shuffle_differently():
    k1, k2 = jax.random.split(jax.random.key(9))
    r1, _ = fn.data.batches(k1, 100, 10)
    r2, _ = fn.data.batches(k2, 100, 10)
    assert not np.array_equal(r1, r2)


@pytest.mark.parametrize("ds, match", [
    (fn.data.Dataset(jnp.zeros((3, 2)), jnp.zeros((4, 2))), "3 rows but ds.y has 4"),
    (fn.data.Dataset(jnp.zeros((0, 2)), jnp.zeros((0, 2))), "empty"),
    (fn.data.Dataset(jnp.array([[0.0, jnp.nan]]), jnp.array([[1.0, 0.0]])), "NaN or Inf"),
    (fn.data.Dataset(jnp.array([[0.0, jnp.inf]]), jnp.array([[1.0, 0.0]])), "NaN or Inf"),
    (fn.data.Dataset(jnp.zeros((2, 2)), jnp.array([[1.0, 0.0], [jnp.nan, 1.0]])),
     r"ds.y holds NaN or Inf \(first in row 1\)"),
    (fn.data.Dataset(jnp.zeros(3), jnp.zeros((3, 2))), "2-D"),
    (fn.data.Dataset(jnp.zeros((3, 2)), jnp.float32(1.0)), "a row per example"),
])
def test_bad_datasets_are_refused_with_a_reason(ds, match):
    with pytest.raises(ValueError, match=match):
        fn.data.check_dataset(ds, "ds")


@pytest.mark.parametrize("y", [jnp.array([[1.0, 0.0], [0.5, 0.5]]), jnp.array([[1.0, 1.0],
                                                                               [0.0, 1.0]]),
                               jnp.array([2, 0]), jnp.array([[-3.5], [7.0]])])
def test_check_dataset_takes_labels_of_every_kind(y):
    """Ids, soft, multi-hot and real rows are data; whether they fit a loss is
    funcnn.labels.check_labels's question (tests/test_labels.py holds the refusals that
    were check_dataset's: rows not one-hot for a classification loss)."""
    assert fn.data.check_dataset(fn.data.Dataset(jnp.zeros((2, 2)), y), "ds") == 2


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.5, 1.5, 0.01, "0.8"])
def test_split_refuses_fractions_that_leave_a_side_empty(fraction):
    ds = fn.data.gaussian_clusters(jax.random.key(10), n_per_class=10)
    with pytest.raises((ValueError, TypeError), match="train_fraction"):
        fn.data.split(jax.random.key(11), ds, train_fraction=fraction)


@pytest.mark.parametrize("bad", [1337, None, 0.5, jnp.zeros(3, jnp.uint32),
                                 jax.random.split(jax.random.key(0), 2)])
def test_keys_must_be_keys(bad):
    with pytest.raises(TypeError, match="key"):
        fn.data.gaussian_clusters(bad, n_per_class=10)


def test_a_legacy_uint32_key_is_wrapped():
    legacy = jax.random.PRNGKey(12)
    typed = jax.random.key(12)
    np.testing.assert_array_equal(fn.data.gaussian_clusters(legacy, 10).x,
                                  fn.data.gaussian_clusters(typed, 10).x)


def test_numpy_scalars_are_accepted_and_nonsense_refused():
    ds = fn.data.gaussian_clusters(jax.random.key(13), np.int64(5))
    assert ds.x.shape == (10, 2)
    train, _ = fn.data.split(jax.random.key(14), ds, np.float32(0.8))
    assert train.x.shape == (8, 2)
    with pytest.raises(ValueError, match="std"):
        fn.data.gaussian_clusters(jax.random.key(15), 5, std=float("nan"))
    with pytest.raises(ValueError, match="centers"):
        fn.data.gaussian_clusters(jax.random.key(16), 5, centers=(1.0, 2.0))
    with pytest.raises(ValueError, match="batch_size"):
        fn.data.batches(jax.random.key(17), 10, 0)


def test_uniform_stays_below_hi_in_float32():
    u = fn.rng.draw_uniform(jax.random.key(18), (200_000,), 1.0, 1.5)
    assert float(u.min()) >= 1.0 and float(u.max()) < 1.5


# --- the per-epoch shuffle ----------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 2, 7, 640, 1024, 1025, 5000])
@pytest.mark.slow
def test_shuffle_is_a_permutation_and_keyed(n):
    order = np.asarray(fn.data.shuffle(jax.random.key(n), n))
    assert order.dtype == np.int32 and order.shape == (n,)
    np.testing.assert_array_equal(np.sort(order), np.arange(n))        # every row once
    np.testing.assert_array_equal(fn.data.shuffle(jax.random.key(n), n), order)   # same key
    if n > 2:
        assert not np.array_equal(fn.data.shuffle(jax.random.key(n + 1), n), order)  # other
        assert not np.array_equal(order, np.arange(n))                 # it does move rows


@pytest.mark.parametrize("n", [1, 2, 7, 640, 1024, 1025])
@pytest.mark.slow
def test_many_shuffles_at_once_are_the_shuffles_one_by_one(n):
    """data.shuffles (fit_many's: a sorting network over all keys) == shuffle, key by key."""
    keys = jax.random.split(jax.random.key(n), 5)
    many = np.asarray(fn.data.shuffles(keys, n))
    assert many.dtype == np.int32 and many.shape == (5, n)
    for key, order in zip(keys, many):
        np.testing.assert_array_equal(order, fn.data.shuffle(key, n))


@pytest.mark.parametrize("size", [1, 2, 4, 64, 1024])
@pytest.mark.slow
def test_sort_columns_sorts_as_lax_sort(size):
    x = jax.random.bits(jax.random.key(size), (size, 9), jnp.uint32)
    x = x.at[size // 2].set(x[0])                                     # a tie
    np.testing.assert_array_equal(fn.backend.sort_columns(x), jax.lax.sort(x, dimension=0))


def test_shuffle_refuses_a_bad_count_or_key():
    with pytest.raises(ValueError, match="n must be >= 1"):
        fn.data.shuffle(jax.random.key(0), 0)
    with pytest.raises(TypeError, match="JAX random key"):
        fn.data.shuffle(3, 5)


def _quarter_counts(orders):
    """counts[r, q]: how often row r (of rows 0-3) lands in quarter q of the order, over the
    orders `i32[shuffles, n]`."""
    n = orders.shape[1]
    quarter = np.argsort(orders, axis=1)[:, :4] * 4 // n          # where rows 0..3 went
    return np.stack([np.bincount(quarter[:, r], minlength=4) for r in range(4)])


def _chi2(counts):
    expected = counts.sum() / counts.size
    return float(((counts - expected) ** 2 / expected).sum())


CHI2_BOUND = 37.7   # chi-square, 12 degrees of freedom: exceeded with probability 1e-4


@pytest.mark.parametrize("n", [4, 1500, 5000])    # the packed sort (n <= 1024), the Feistel
@pytest.mark.slow
def test_shuffle_is_uniform(n):
    """Over 4,000 keyed shuffles, each of rows 0-3 lands in each quarter of the order about
    equally often (a chi-square test; the keys are fixed, so every run gives one answer)."""
    keys = jax.random.split(jax.random.key(99), 4000)
    shuffles = jax.jit(jax.vmap(lambda k: fn.data.shuffle(k, n)), compiler_options=XLA_DEFAULTS)
    orders = np.asarray(shuffles(keys))               # much computing: compiled as users have it
    counts = _quarter_counts(orders)
    assert _chi2(counts) < CHI2_BOUND, f"counts {counts.tolist()}"


def test_a_biased_shuffle_fails_the_uniformity_bound():
    """The test bites: a 'shuffle' that only rotates 4 rows, never by 3, is far past it."""
    shifts = np.arange(4000) % 3
    orders = (np.arange(4)[None, :] + shifts[:, None]) % 4
    assert _chi2(_quarter_counts(orders)) > CHI2_BOUND


def _neighbour_z(orders):
    """The largest |z| of how often rows within 4 of each other (mod n) sit 1 or 2 places
    apart in `orders: i32[shuffles, n]`, or places within 4 hold rows 1 or 2 apart, against
    a uniform order's rate of 8 / n: a Feistel network with too few rounds fails it."""
    n, zs = orders.shape[1], []
    for arr in (orders, np.argsort(orders, axis=1)):              # rows by place, places by row
        for lag in (1, 2):
            d = (arr[:, lag:] - arr[:, :-lag]) % n
            close, expected = (np.minimum(d, n - d) <= 4).sum(), 8 / n * d.size
            zs.append(abs(close - expected) / expected ** 0.5)
    return max(zs)


NEIGHBOUR_Z_BOUND = 4.5   # a normal z: exceeded with probability 7e-6 (x4 tests)


@pytest.mark.parametrize("n", [1025, 4096])       # the Feistel network's smallest; a 2^(2h)
@pytest.mark.slow
def test_a_shuffle_keeps_no_neighbours_together(n):
    keys = jax.random.split(jax.random.key(7), 1000)
    orders = np.asarray(jax.vmap(lambda k: fn.data.shuffle(k, n))(keys))
    assert _neighbour_z(orders) < NEIGHBOUR_Z_BOUND


@pytest.mark.slow
def test_a_four_round_feistel_fails_the_neighbour_bound():
    """The test bites: 4 rounds of the same network (half of fn.data's) keep neighbours."""
    keys = jax.random.split(jax.random.key(7), 1000)
    orders = np.asarray(jax.vmap(lambda k: fn.data.feistel_order(k, 4096, rounds=4))(keys))
    np.testing.assert_array_equal(np.sort(orders[0]), np.arange(4096))  # still a permutation
    assert _neighbour_z(orders) > NEIGHBOUR_Z_BOUND


# --- values are checked where the data live -------------------------------------------------

@pytest.mark.parametrize("x, y", [
    (np.zeros((5, 2)), np.eye(2)[[0, 1, 0, 1, 1]]),
    (np.array([[0, 1], [0, np.inf], [np.nan, 0]]), np.eye(2)[[0, 1, 0]]),
    (np.zeros((3, 2, 2, 1)), np.array([[1.0, 0.0], [0.5, 0.5], [1.0, 1.0]])),
    (np.zeros((3, 2)), np.array([[1.0], [0.0], [2.0]])),
    (np.zeros((2, 2)), np.array([[1.0, 0.0], [np.nan, 1.0]])),
    (np.array([[0, 1], [0, np.inf]]), np.array([[np.inf], [0.0]])),
    (np.zeros((3, 2)), np.array([0, 2, 1])),
])
def test_the_device_check_finds_what_the_host_check_finds(x, y):
    # on a GPU or over several hosts the values are checked on the devices, by the same code
    on_host = [int(v) for v in fn.data._bad_rows(np, x, y)]
    with jax.transfer_guard("disallow"):          # an implicit copy of x or y would raise
        found = jax.device_get(fn.data._bad_rows_on_device(jax.device_put(x), jax.device_put(y)))
    assert [int(v) for v in found] == on_host


def test_numpy_arrays_are_checked_on_every_call():
    host = fn.data.Dataset(np.zeros((5, 2)), np.eye(2)[[0, 1, 0, 1, 1]])
    fn.data.check_dataset(host)
    host.x[2, 0] = np.nan                                          # NumPy can change in place
    with pytest.raises(ValueError, match=r"NaN or Inf \(first in row 2\)"):
        fn.data.check_dataset(host)


def test_a_bad_jax_dataset_is_refused_every_time():
    bad = fn.data.Dataset(jnp.array([[0.0, jnp.nan]]), jnp.array([[1.0, 0.0]]))
    for _ in range(2):
        with pytest.raises(ValueError, match="NaN or Inf"):
            fn.data.check_dataset(bad)
