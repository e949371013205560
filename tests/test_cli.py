"""The command line: the Clojure run end to end, its flags, and errors without tracebacks."""
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
from conftest import environ_of_a_user


def run_cli(*args, tmp_path):
    env = environ_of_a_user(XDG_CACHE_HOME=str(tmp_path / "cache"))
    return subprocess.run([sys.executable, "-m", "funcnn", *args], capture_output=True,
                          text=True, cwd=tmp_path, env=env, timeout=300)


@pytest.mark.slow
def test_the_default_command_is_the_clojure_run(tmp_path):
    r = run_cli(tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    epochs = [l for l in r.stdout.splitlines() if l.startswith("epoch")]
    assert len(epochs) == 20 and epochs[-1].startswith("epoch 20/20")
    final = float(epochs[-1].split("test accuracy")[1].split()[0])
    assert final > 0.95
    svg = tmp_path / "images" / "decision_boundary.svg"
    assert f"written to images{os.sep}decision_boundary.svg" in r.stdout
    root = ET.parse(svg).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg" and root.get("viewBox")


@pytest.mark.slow
def test_flags_change_the_run(tmp_path):
    r = run_cli("clusters", "--epochs", "3", "--lr", "0.3", "--batch-size", "8",
                "--points-per-class", "50", "--seed", "7", "--out", "pics/b.svg", "--no-cache",
                tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "80 training and 20 test points, 3 epochs, lr 0.3, batch 8" in r.stdout
    assert sum(l.startswith("epoch") for l in r.stdout.splitlines()) == 3
    assert (tmp_path / "pics" / "b.svg").exists()


def test_help_explains_the_flags(tmp_path):
    r = run_cli("clusters", "--help", tmp_path=tmp_path)
    assert r.returncode == 0
    for flag in ("--epochs", "--lr", "--batch-size", "--points-per-class", "--seed", "--out"):
        assert flag in r.stdout


@pytest.mark.parametrize("args, message", [
    (["--epochs", "0"], "must be >= 1"),
    (["--lr", "-1"], "must be finite and > 0"),
    (["--batch-size", "many"], "expected a whole number"),
    (["--seed", "-1"], "argument --seed: must be between 0 and 9223372036854775807, got -1"),
    (["--points-per-class", "1"], "train_fraction"),         # a library check, not argparse's
])
@pytest.mark.slow
def test_bad_input_exits_2_with_a_message_and_no_traceback(args, message, tmp_path):
    r = run_cli(*args, "--no-cache", tmp_path=tmp_path)
    assert r.returncode == 2
    assert message in r.stderr and "Traceback" not in r.stderr


def test_quick_compile_adds_its_flags_and_leaves_the_users(monkeypatch):
    from funcnn import backend
    monkeypatch.setattr("importlib.metadata.version", lambda name: "0.10.2")
    monkeypatch.setenv("XLA_FLAGS", "--xla_backend_optimization_level=2")
    backend.quick_compile()
    flags = os.environ["XLA_FLAGS"].split()
    assert flags == ["--xla_backend_optimization_level=2",        # the user's, untouched
                     "--xla_cpu_use_fusion_emitters=false"]


def test_quick_compile_sets_nothing_for_an_unchecked_jaxlib(monkeypatch):
    """XLA aborts on a flag it does not know: a jaxlib the flags were not checked on gets none."""
    from funcnn import backend
    monkeypatch.setattr("importlib.metadata.version", lambda name: "0.11.0")
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    backend.quick_compile()
    assert "XLA_FLAGS" not in os.environ


@pytest.mark.slow
def test_the_installed_jaxlib_accepts_the_quick_compile_flags(tmp_path):
    """The flags are real for the jaxlib installed here: the run with them succeeds."""
    from funcnn import backend
    from importlib.metadata import version
    if not version("jaxlib").startswith(backend.QUICK_COMPILE_JAXLIB):
        pytest.skip(f"jaxlib {version('jaxlib')}: the quick-compile flags are not used")
    r = run_cli("clusters", "--epochs", "1", "--points-per-class", "20", "--quiet",
                "--no-cache", tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
