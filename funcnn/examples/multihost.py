"""Fashion-MNIST's MLP trained data-parallel over several processes, each holding only its rows.

With no --coordinator, the command starts the processes itself on this machine
(--num-processes, 2 by default, on 127.0.0.1, each with --devices-per-process CPU devices) and
watches them: if one dies, the others are stopped and the command says which and why. On
several hosts, run on each one `python -m funcnn multihost --coordinator HOST0:PORT
--num-processes N --process-id I` (I = 0 on HOST0). Each process reads the files, keeps its
own block of the training and test rows (1/N of each) and drops the rest; `shard_rows` makes
the global data set of them, and `fit(..., mesh=...)` trains on all rows with one shuffle per
epoch: the numbers are those of one process with all the devices. 784 -> 128 (ReLU) -> 10,
Adam 1e-3, batch 128, as seed 2's sound recipe.
"""
import os
import signal
import socket
import subprocess
import sys
import threading
import time

HELP = "Fashion-MNIST's MLP over several processes (hosts), each holding only its rows"
DESCRIPTION = __doc__.split("\n\n")[1].replace("\n", " ")


def add_arguments(p, positive_int, positive_float):
    p.add_argument("--coordinator", default=None, help="HOST:PORT of process 0; given, this "
                   "is one worker of the run (default: start all workers here, on 127.0.0.1)")
    p.add_argument("--num-processes", type=positive_int, default=2, help="processes in all")
    p.add_argument("--process-id", type=int, default=None, help="this worker's number, 0 to "
                   "num-processes - 1 (with --coordinator)")
    p.add_argument("--devices-per-process", type=positive_int, default=2,
                   help="CPU devices each started worker gets (default 2)")
    p.add_argument("--epochs", type=positive_int, default=2)
    p.add_argument("--batch-size", type=positive_int, default=128)
    p.add_argument("--timeout", type=positive_float, default=60.0, help="seconds a worker "
                   "waits for the others to connect, or to answer (default 60)")
    p.add_argument("--data", default=None, help="directory with the four IDX files "
                   "(default: $FUNCNN_DATA, /usr/share/datasets/fashion-mnist, the cache)")
    return "images/multihost_curves.svg"


def run(args) -> int:
    if args.coordinator is None:
        return _launch(args)
    if args.process_id is None or not 0 <= args.process_id < args.num_processes:
        print(f"funcnn: error: --process-id must be 0 to {args.num_processes - 1} with "
              "--coordinator", file=sys.stderr)
        return 2
    return _work(args)


# --- one worker: data -> model -> training -> picture, on its share of the rows -----------

def _work(args) -> int:
    import jax
    jax.distributed.initialize(coordinator_address=args.coordinator,
                               num_processes=args.num_processes, process_id=args.process_id,
                               initialization_timeout=int(args.timeout),
                               heartbeat_timeout_seconds=int(args.timeout))
    import numpy as np
    import funcnn as fn

    me, count = jax.process_index(), jax.process_count()
    x, labels, x_test, labels_test = fn.sources.load_fashion_mnist(args.data)   # u8, on the host
    mine, mine_test = _block(len(x), me, count), _block(len(x_test), me, count)
    mesh = jax.make_mesh((jax.device_count(),), ("batch",))
    train = fn.parallel.shard_rows(_dataset(x[mine], labels[mine]), mesh)
    test = fn.parallel.shard_rows(_dataset(x_test[mine_test], labels_test[mine_test]), mesh)
    del x, labels, x_test, labels_test                          # the other processes' rows
    say = print if me == 0 else (lambda *a, **k: None)
    print(f"process {me}/{count}: training rows {mine.start}-{mine.stop - 1}, test rows "
          f"{mine_test.start}-{mine_test.stop - 1}, {jax.local_device_count()} devices",
          flush=True)

    net = fn.model.mlp([784, 128, 10], hidden=fn.math.relu, output=fn.math.identity,
                       loss=fn.losses.softmax_cross_entropy, init=fn.model.lecun())
    k_init, k_fit = jax.random.split(fn.rng.key(args.seed))
    params = fn.model.init(k_init, net)
    say(f"{net}: {train.x.shape[0]} training and {test.x.shape[0]} test images over {count} "
        f"processes x {jax.local_device_count()} devices, {args.epochs} epochs, batch "
        f"{args.batch_size}, adam(1e-3)", flush=True)
    params, history = fn.train.fit(k_fit, net, params, train, test, epochs=args.epochs,
                                   batch_size=args.batch_size, optimizer=fn.optim.adam(1e-3),
                                   mesh=mesh, verbose=not args.quiet)
    say(f"test accuracy {float(history['test_accuracy'][-1]):.4f} after {args.epochs} epochs",
        flush=True)
    if me == 0:
        path = fn.visualization.curves(history, args.out, title=f"{net}, {count} processes")
        saved = fn.history.save(history, args.out.replace(".svg", "_history.json"))
        print(f"loss and accuracy curves written to {path}, the history to {saved}", flush=True)
    jax.distributed.shutdown()                                  # waits for every process
    return 0


def _block(n: int, me: int, count: int) -> slice:
    """The rows process `me` of `count` holds: an equal block each (a remainder is dropped)."""
    size = n // count
    return slice(me * size, (me + 1) * size)


def _dataset(images, labels):
    import numpy as np
    import funcnn as fn
    x = images.reshape(len(images), -1).astype(np.float32) / 255.0
    return fn.data.Dataset(x, np.eye(10, dtype=np.float32)[labels])


# --- the launcher: every worker on this machine, watched --------------------------------

def _launch(args) -> int:
    """Start args.num_processes workers on 127.0.0.1 and wait; stop them all if one fails."""
    port = _free_port()
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["XLA_FLAGS"] = " ".join([env.get("XLA_FLAGS", ""), "--xla_force_host_platform_device"
                                 f"_count={args.devices_per_process}"]).strip()
    passed = [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
              if k in ("epochs", "batch_size", "timeout", "data", "seed", "out") and v is not None]
    passed += ["--quiet"] * args.quiet + ["--no-cache"] * args.no_cache
    workers = []
    print(f"starting {args.num_processes} processes on 127.0.0.1:{port}, "
          f"{args.devices_per_process} CPU devices each", flush=True)
    for i in range(args.num_processes):
        command = [sys.executable, "-m", "funcnn", "multihost", f"--coordinator=127.0.0.1:{port}",
                   f"--num-processes={args.num_processes}", f"--process-id={i}", *passed]
        w = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, bufsize=1)
        threading.Thread(target=_relay, args=(w.stdout, i), daemon=True).start()
        print(f"process {i} started (pid {w.pid})", flush=True)
        workers.append(w)
    try:
        return _watch(workers)
    finally:
        for w in workers:                          # nothing is left behind, whatever happened
            _stop(w)


def _watch(workers) -> int:
    while True:
        codes = [w.poll() for w in workers]
        failed = [(i, c) for i, c in enumerate(codes) if c not in (None, 0)]
        if failed:
            i, code = failed[0]
            why = (f"was killed by signal {signal.Signals(-code).name}" if code < 0 else
                   f"exited with status {code}")
            print(f"funcnn: error: process {i} {why}; stopping the other processes",
                  file=sys.stderr, flush=True)
            return 1
        if all(c == 0 for c in codes):
            return 0
        time.sleep(0.1)


def _stop(w, grace: float = 5.0) -> None:
    if w.poll() is None:
        w.terminate()
        try:
            w.wait(grace)
        except subprocess.TimeoutExpired:
            w.kill()
            w.wait()


def _relay(stream, i: int) -> None:
    """Copy a worker's output to ours, each line marked with its process; gloo's connection
    chatter is dropped."""
    for line in stream:
        if not line.startswith("[Gloo]"):
            print(line if i == 0 else f"[process {i}] {line}", end="", flush=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
