"""The four seeds (and a CNN and a regression beyond them) as runnable examples:
`python -m funcnn <name>` (or `examples/<name>.py`).

Each module has a `HELP` line, `add_arguments(parser)` for its flags and `run(args)`; each
run is a short script of funcnn calls, in the original's flow: data -> model -> training ->
metrics -> pictures in images/.
"""
from funcnn.examples import (circles, clusters, fashion_cnn, fashion_mnist_numpy, multihost,
                             regression, sequential, shakespeare_char)

EXAMPLES = {"clusters": clusters, "circles": circles,
            "fashion-mnist-numpy": fashion_mnist_numpy, "sequential": sequential,
            "fashion-cnn": fashion_cnn, "multihost": multihost, "regression": regression,
            "shakespeare-char": shakespeare_char}
