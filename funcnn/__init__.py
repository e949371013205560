"""funcnn: neural networks as pure functions on JAX, every gradient written by hand.

Read it in the order of the Clojure original: rng -> data (labels, idx, sources) -> math ->
losses -> layers (initializers, backend) -> networks -> model (pieces, sampling) -> schedules -> optim ->
metrics -> gradcheck -> parallel -> train (history: its progress lines, saved history, early
stopping) -> visualization -> io (checkpoints; descriptions, a network as JSON). checks holds
the input checks every module shares; files, the one atomic writer.
"""
from funcnn import (checks, idx, sources, rng, labels, data, math, losses,  # noqa: F401
                    initializers, backend, layers, networks, pieces, model, schedules, optim,
                    metrics, gradcheck, parallel, history, train, visualization, files,
                    descriptions, io)

__version__ = "0.1.0"
