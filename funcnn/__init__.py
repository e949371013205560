"""funcnn: neural networks as pure functions on JAX, every gradient written by hand.

Read it in the order of the Clojure original: rng -> data (idx, sources) -> math -> losses ->
layers (initializers, backend) -> networks -> model (pieces) -> optim -> metrics -> gradcheck
-> parallel -> train -> visualization -> io (checkpoints; descriptions, a network as JSON). checks holds the input
checks every module shares; files, the one atomic writer.
"""
from funcnn import (checks, idx, sources, rng, data, math, losses,  # noqa: F401
                    initializers, backend, layers, networks, pieces, model, optim, metrics,
                    gradcheck, parallel, train, visualization, files, descriptions, io)

__version__ = "0.1.0"
