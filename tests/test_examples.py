"""The seeds' examples end to end (in-process, small where the real run is long), and the
optimizers and probes through fit."""
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import jax
import pytest
from conftest import environ_of_a_user

import funcnn as fn
import funcnn.examples  # noqa: F401 (fn.examples, below: `import funcnn` does not load it)
from funcnn.__main__ import main

SVG = "{http://www.w3.org/2000/svg}"
FASHION = pytest.mark.skipif(
    not os.path.isdir("/usr/share/datasets/fashion-mnist") and not os.environ.get("FUNCNN_DATA"),
    reason="Fashion-MNIST is not installed: sudo apt-get install dataset-fashion-mnist")


def _last_number(out: str, prefix: str) -> float:
    line = [l for l in out.splitlines() if l.startswith(prefix)][-1]
    return float(line.split(prefix)[1].split()[0])


@pytest.mark.slow
def test_circles_seed_recipe_learns_and_animates(tmp_path, capsys):
    out = tmp_path / "circles.svg"
    assert main(["circles", "--quiet", "--no-cache", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert _last_number(printed, "test accuracy") > 0.95
    frames = ET.parse(tmp_path / "circles_training.svg").getroot()
    assert frames.tag == f"{SVG}svg"
    assert len(frames.findall(f".//{SVG}set")) + len(frames.findall(f".//{SVG}animate")) >= 80
    assert ET.parse(out).getroot().tag == f"{SVG}svg"                       # the final still
    assert (tmp_path / "circles_curves.svg").exists()


@FASHION
@pytest.mark.slow
def test_fashion_mnist_sound_recipe_on_a_subset(tmp_path, capsys):
    out = tmp_path / "fm.svg"
    assert main(["fashion-mnist-numpy", "--recipe", "sound", "--subset", "10000", "--epochs",
                 "3", "--quiet", "--no-cache", "--out", str(out)]) == 0
    assert _last_number(capsys.readouterr().out, "test accuracy") > 0.80
    for part in ("curves", "confusion", "mistakes"):
        assert ET.parse(tmp_path / f"fm_{part}.svg").getroot().tag == f"{SVG}svg"


@FASHION
@pytest.mark.slow
def test_fashion_mnist_save_then_load_gives_the_same_accuracy(tmp_path, capsys):
    ckpt = tmp_path / "ckpt" / "fm.npz"
    common = ["fashion-mnist-numpy", "--no-cache", "--quiet", "--out", str(tmp_path / "a.svg")]
    assert main([*common, "--recipe", "sound", "--subset", "2000", "--epochs", "1",
                 "--save", str(ckpt)]) == 0
    trained = _last_number(capsys.readouterr().out, "test accuracy")
    assert main([*common, "--load", str(ckpt)]) == 0
    assert _last_number(capsys.readouterr().out, "test accuracy") == trained


@FASHION
@pytest.mark.slow
def test_sequential_reports_accuracy_after_a_budget_and_after_steps(tmp_path, capsys):
    assert main(["sequential", "--seconds", "1", "--steps", "500", "--no-cache", "--quiet",
                 "--out", str(tmp_path / "seq.svg")]) == 0
    printed = capsys.readouterr().out
    assert "s (" in printed and _last_number(printed, "after 500 steps: test accuracy") > 0.6


@pytest.mark.slow
def test_fit_with_adam_and_a_probe():
    k_data, k_split, k_init, k_fit = jax.random.split(jax.random.key(3), 4)
    train, test = fn.data.split(k_split, fn.data.gaussian_clusters(k_data, n_per_class=100))
    net = fn.model.mlp([2, 8, 2], hidden=fn.math.tanh, output=fn.math.identity,
                       loss=fn.losses.softmax_cross_entropy, init=fn.model.glorot())
    probe = lambda params: fn.model.forward(net, params, test.x[:5])
    params, hist = fn.train.fit(k_fit, net, fn.model.init(k_init, net), train, test,
                                epochs=10, optimizer=fn.optim.adam(0.05), probe=probe,
                                verbose=False)
    assert float(hist["test_accuracy"][-1]) > 0.95
    assert hist["probe"].shape == (10, 5, 2)
    assert bool(jax.numpy.allclose(hist["probe"][-1], fn.model.forward(net, params, test.x[:5]),
                                   rtol=1e-5, atol=1e-6))
    with pytest.raises(ValueError, match="give the learning rate to the optimizer"):
        fn.train.fit(jax.random.key(0), net, params, train, lr=0.1, optimizer=fn.optim.sgd(0.1))


@FASHION
@pytest.mark.slow
def test_fashion_cnn_learns_shows_progress_and_draws_its_pictures(tmp_path):
    out = tmp_path / "cnn.svg"            # a process of its own, compiled as a user's run is
    r = subprocess.run([sys.executable, "-m", "funcnn", "fashion-cnn", "--narrow", "--subset",
                        "2560", "--epochs", "2", "--progress-every", "10", "--no-cache",
                        "--out", str(out), "--save", str(tmp_path / "cnn.npz")],
                       capture_output=True, text=True, env=environ_of_a_user(), timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    printed = r.stdout
    steps = [l for l in printed.splitlines() if l.lstrip().startswith("step ")]
    assert len(steps) == 2 * 2 and steps[0].split()[1] == "10/20"      # 20 steps an epoch
    assert [l.split()[1] for l in printed.splitlines() if l.startswith("epoch")] == ["1/2", "2/2"]
    assert "Conv2D(16, 3x3, stride 1, SAME)" in printed                 # the summary table
    assert _last_number(printed, "test accuracy") > 0.6                 # chance: 0.1
    for part in ("curves", "confusion", "mistakes", "filters"):
        assert ET.parse(tmp_path / f"cnn_{part}.svg").getroot().tag == f"{SVG}svg"
    filters = ET.parse(tmp_path / "cnn_filters.svg").getroot().findall(f".//{SVG}image")
    assert len(filters) == 16                                           # one per channel
    net = fn.io.load_network(tmp_path / "cnn.npz")
    assert net == fn.examples.fashion_cnn.cnn(16, 32)
