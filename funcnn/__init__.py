"""funcnn: neural networks as pure functions on JAX, every gradient written by hand.

Read it in the order of the Clojure original: rng -> data -> math -> losses -> model ->
metrics -> gradcheck -> train -> visualization.
"""
from funcnn import rng, data, math, losses, model, metrics, gradcheck, train, visualization  # noqa: F401

__version__ = "0.1.0"
