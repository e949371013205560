"""funcnn: neural networks as pure functions on JAX, every gradient written by hand.

Read it in the order of the Clojure original: rng -> data (idx) -> math -> losses -> layers
(initializers, backend) -> model -> optim -> metrics -> gradcheck -> parallel -> train ->
visualization -> io (checkpoints). (checks holds the input checks every module shares; files,
the one atomic writer.)
"""
from funcnn import (checks, idx, rng, data, math, losses, initializers, backend,  # noqa: F401
                    layers, model, optim, metrics, gradcheck, parallel, train,
                    visualization, files, io)

__version__ = "0.1.0"
