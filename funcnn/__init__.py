"""funcnn: neural networks as pure functions on JAX, every gradient written by hand.

Read it in the order of the Clojure original: rng -> data (idx) -> math -> losses -> model ->
optim -> metrics -> gradcheck -> train -> visualization -> io (checkpoints). (checks holds
the input checks every module shares.)
"""
from funcnn import (checks, idx, rng, data, math, losses, model, optim, metrics,  # noqa: F401
                    gradcheck, train, visualization, io)

__version__ = "0.1.0"
