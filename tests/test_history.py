"""What a run reports: early stopping with the best epoch's params, the history saved to JSON
or CSV, and the progress lines' estimate of the time left."""
import json

import jax
import numpy as np
import pytest

import funcnn as fn

M, L = fn.math, fn.losses


def _setup():
    """A small net that overfits a noisy test set within a few epochs at lr 0.5."""
    net = fn.model.mlp([2, 8, 2], hidden=M.tanh, output=M.identity, loss=L.softmax_cross_entropy)
    train = fn.data.gaussian_clusters(jax.random.key(0), 64)
    test = fn.data.gaussian_clusters(jax.random.key(1), 64)
    return net, fn.model.init(jax.random.key(2), net), train, test


@pytest.mark.slow
def test_early_stopping_returns_the_best_epochs_params_and_skips_the_rest(capfd):
    net, p0, train, test = _setup()
    params, hist = fn.train.fit(jax.random.key(3), net, p0, train, test, epochs=40, lr=0.5,
                                patience=3)
    printed = capfd.readouterr().out
    ran, best = hist["epochs_run"], hist["best_epoch"]
    assert ran < 40 and hist["test_loss"].shape == (ran,)      # it stopped, history cut there
    assert best == int(np.argmin(hist["test_loss"])) + 1      # the best is the history's best
    assert ran == best + 3                                     # 3 epochs without improvement
    assert np.all(hist["test_loss"][best:] >= hist["test_loss"][best - 1])
    # the epochs after the stop ran nothing: their lines (printed from the computing branch)
    # are not there, and a line says what happened
    assert sum(l.startswith("epoch") for l in printed.splitlines()) == ran
    assert f"best epoch {best} " in printed and f"epochs {ran + 1}-40 were skipped" in printed
    # the params are those after epoch `best`: a run of `best` epochs gives them bitwise
    again, h = fn.train.fit(jax.random.key(3), net, p0, train, test, epochs=best, lr=0.5,
                            verbose=False)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(again)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(h["test_loss"], hist["test_loss"][:best])


@pytest.mark.slow
def test_a_monitored_accuracy_is_maximised_and_without_a_stop_all_epochs_run():
    net, p0, train, test = _setup()
    params, hist = fn.train.fit(jax.random.key(3), net, p0, train, test, epochs=6, lr=0.5,
                                patience=10, monitor="train_accuracy", verbose=False)
    assert hist["epochs_run"] == 6 and hist["train_accuracy"].shape == (6,)
    best = hist["best_epoch"]
    assert hist["train_accuracy"][best - 1] == hist["train_accuracy"].max()
    assert np.all(hist["train_accuracy"][:best - 1] < hist["train_accuracy"][best - 1])


@pytest.mark.parametrize("kwargs, match", [
    (dict(patience=0), r"patience must be"),
    (dict(patience=2, monitor="val_loss"), r"monitor must name an entry .*'test_loss'.*val_loss"),
    (dict(patience=2, min_delta=-1), r"min_delta must be a number >= 0"),
    (dict(patience=2, test=None), r"patience watches test_loss by default, but no test set"),
    (dict(patience=2, test=None, monitor="test_accuracy"), r"monitor must name an entry"),
])
def test_bad_early_stopping_arguments_are_refused_before_compiling(kwargs, match, compiles):
    net, p0, train, test = _setup()
    kwargs, before = {"test": test, **kwargs}, compiles()     # (making the data compiles)
    with pytest.raises(fn.checks.InputError, match=match):
        fn.train.fit(jax.random.key(3), net, p0, train, epochs=3, verbose=False, **kwargs)
    assert compiles() == before


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".json", ".csv"])
def test_history_saves_and_loads_in_one_call(tmp_path, suffix):
    net, p0, train, test = _setup()
    _, hist = fn.train.fit(jax.random.key(3), net, p0, train, test, epochs=3, lr=0.5,
                           verbose=False, patience=5)
    path = fn.history.save(hist, tmp_path / f"run{suffix}")
    back = fn.history.load(path)
    for name in ("train_loss", "train_accuracy", "test_loss", "test_accuracy"):
        np.testing.assert_array_equal(back[name], np.asarray(hist[name]))
    assert [p.name for p in tmp_path.iterdir()] == [f"run{suffix}"]      # no temporary left
    if suffix == ".json":
        raw = json.loads(path.read_text())
        assert raw["epoch"] == [1, 2, 3] and raw["best_epoch"] == hist["best_epoch"]
    else:
        assert path.read_text().splitlines()[0].split(",")[0] == "epoch"


def test_an_ensembles_history_saves_a_column_per_network(tmp_path):
    hist = {"train_loss": np.arange(6, dtype=np.float32).reshape(2, 3)}
    text = fn.history.save(hist, tmp_path / "many.csv").read_text().splitlines()
    assert text[0] == "epoch,train_loss[0],train_loss[1]" and text[1] == "1,0.0,3.0"


def test_history_save_refuses_an_unknown_format(tmp_path):
    with pytest.raises(fn.checks.InputError, match=r"path must end in .json or .csv"):
        fn.history.save({"train_loss": np.zeros(2)}, tmp_path / "run.txt")
    assert not list(tmp_path.iterdir())


def test_the_time_left_is_estimated_on_runs_longer_than_a_few_seconds():
    t = fn.history._time
    assert t(1.0, 1, 10) == "(1.0 s)"                          # too early to say
    assert t(10.0, 2, 10) == "(10.0 s, ~40 s left)"            # 5 s per unit, 8 units left
    assert t(10.0, 2, 10, digits=2) == "(10.00 s, ~40 s left)"
    assert t(60.0, 1, 10) == "(60.0 s, ~9.0 min left)"
    assert t(10.0, 10, 10) == "(10.0 s)"                       # done: nothing left


def test_an_mse_on_class_labels_prints_accuracy_and_no_rmse(capsys):
    """The square root is for a regression's mse only (seed 1 trains one-hot rows with mse)."""
    printed = {"train_loss": np.float32(0.04), "train_accuracy": np.float32(0.9)}
    fn.history.print_epoch(3, 0, 1, "mse", 3, printed, fn.history.clock())
    line = capsys.readouterr().out
    assert "train mse 0.0400" in line and "train accuracy 0.9000" in line and "rmse" not in line
    fn.history.print_epoch(3, 0, 1, "mse", 3, {"train_loss": np.float32(0.04)},
                           fn.history.clock())
    assert "train mse 0.0400 (rmse 0.2000)" in capsys.readouterr().out
