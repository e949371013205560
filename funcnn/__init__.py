"""funcnn: neural networks as pure functions on JAX, every gradient written by hand.

Read it in the order of the Clojure original: rng -> data (idx) -> math -> losses -> model ->
optim -> metrics -> gradcheck -> train -> visualization. (checks holds the input checks.)
"""
from funcnn import (checks, idx, rng, data, math, losses, model, optim, metrics,  # noqa: F401
                    gradcheck, train, visualization)

__version__ = "0.1.0"
