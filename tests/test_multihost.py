"""Several processes on 127.0.0.1, each holding only its own rows, train as one process does;
a process that dies stops the run with a clear error instead of a hang.

Every process here runs under a timeout and is killed, if still alive, when its test ends.
"""
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import environ_of_a_user

WORKER = Path(__file__).with_name("multihost_worker.py")
TIMEOUT = 180                     # seconds any one process may take before the test fails


def _env(devices: int) -> dict:
    return environ_of_a_user(JAX_PLATFORMS="cpu",
                             XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(command, devices: int) -> subprocess.Popen:
    return subprocess.Popen(command, env=_env(devices), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _finish(processes, timeout=TIMEOUT) -> list[str]:
    """Wait for every process (all within `timeout`), kill what is left; their outputs."""
    deadline, outputs = time.monotonic() + timeout, []
    try:
        for p in processes:
            try:
                outputs.append(p.communicate(timeout=max(1.0, deadline - time.monotonic()))[0])
            except subprocess.TimeoutExpired:
                pytest.fail(f"a process ran past {timeout} s: {p.args}")
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.wait()
    return outputs


FASHION = pytest.mark.skipif(
    not os.path.isdir("/usr/share/datasets/fashion-mnist") and not os.environ.get("FUNCNN_DATA"),
    reason="Fashion-MNIST is not installed: sudo apt-get install dataset-fashion-mnist")


@pytest.mark.slow
def test_two_processes_of_two_devices_train_as_one_process_of_four(tmp_path):
    one = _start([sys.executable, str(WORKER), str(tmp_path / "one.npz")], devices=4)
    (out,) = _finish([one])
    assert one.returncode == 0, out[-3000:]
    port = _free_port()
    two = [_start([sys.executable, str(WORKER), str(tmp_path / "two.npz"), str(i), "2",
                   str(port)], devices=2) for i in range(2)]
    outs = _finish(two)
    for p, out in zip(two, outs):
        assert p.returncode == 0, out[-3000:]
    want, got = np.load(tmp_path / "one.npz"), np.load(tmp_path / "two.npz")
    assert sorted(want) == sorted(got) and len(want) > 3 * 8
    for name in want:                    # float32: a sum over devices in another order
        scale = np.abs(want[name]).max()
        tol = 0.01 if "accuracy" in name else 2e-5 * scale + 1e-7
        np.testing.assert_allclose(got[name], want[name], rtol=0, atol=tol, err_msg=name)


@FASHION
@pytest.mark.slow
def test_the_example_runs_over_two_processes_as_the_readme_says(tmp_path):
    r = subprocess.run([sys.executable, "-m", "funcnn", "multihost", "--out",
                        str(tmp_path / "curves.svg")], capture_output=True, text=True,
                       timeout=TIMEOUT, env=environ_of_a_user(JAX_PLATFORMS="cpu"))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "process 0/2: training rows 0-29999, test rows 0-4999" in r.stdout
    assert "[process 1] process 1/2: training rows 30000-59999, test rows 5000-9999" in r.stdout
    assert "60000 training and 10000 test images over 2 processes x 2 devices" in r.stdout
    accuracy = float(re.search(r"test accuracy (\S+) after 2 epochs", r.stdout).group(1))
    assert accuracy > 0.8
    assert (tmp_path / "curves.svg").read_text().startswith("<svg")
    assert "[Gloo]" not in r.stdout


@FASHION
@pytest.mark.slow
def test_a_worker_killed_mid_run_stops_the_others_with_a_clear_error(tmp_path):
    launcher = subprocess.Popen([sys.executable, "-m", "funcnn", "multihost", "--epochs", "3",
                                 "--out", str(tmp_path / "c.svg")],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=environ_of_a_user(JAX_PLATFORMS="cpu"))
    pids, lines = {}, []
    try:
        t0 = time.monotonic()
        for line in launcher.stdout:                      # until training has begun
            lines.append(line)
            if m := re.match(r"process (\d) started \(pid (\d+)\)", line):
                pids[int(m.group(1))] = int(m.group(2))
            if line.startswith("process 0/2: training rows"):
                break
            assert time.monotonic() - t0 < TIMEOUT, "".join(lines)
        os.kill(pids[1], 9)                               # process 1 dies mid-run
        rest, _ = launcher.communicate(timeout=30)        # the launcher must not hang
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
    assert launcher.returncode == 1, "".join(lines) + rest
    assert "process 1 was killed by signal SIGKILL; stopping the other processes" in rest
    time.sleep(0.5)
    for pid in pids.values():                             # nothing is left behind
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@FASHION
@pytest.mark.slow
def test_a_dead_peer_ends_a_worker_within_its_timeout():
    """On real hosts there is no launcher: JAX's coordination service notices the missing
    heartbeats and ends the surviving workers with a message, within --timeout seconds."""
    port = _free_port()
    survivor = _start([sys.executable, "-m", "funcnn", "multihost", "--coordinator",
                       f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", "0",
                       "--timeout", "5", "--out", os.devnull], devices=2)
    peer = _start([sys.executable, "-c", (
        "import jax, os; jax.distributed.initialize(coordinator_address='127.0.0.1:"
        f"{port}', num_processes=2, process_id=1, heartbeat_timeout_seconds=5); os._exit(3)")],
        devices=2)
    t0 = time.monotonic()
    out, _ = _finish([survivor, peer], timeout=90)
    assert survivor.returncode != 0
    assert time.monotonic() - t0 < 60
    assert "another task died" in out or "stopped sending heartbeats" in out, out[-3000:]
