"""`python examples/fashion_mnist_numpy.py [flags]` = `python -m funcnn fashion-mnist-numpy [flags]`.

The run itself is funcnn/examples/fashion_mnist_numpy.py, a short script of funcnn calls (kept inside the
package so that the installed `funcnn` command has it too).
"""
import sys

from funcnn.__main__ import main

if __name__ == "__main__":
    sys.exit(main(["fashion-mnist-numpy", *sys.argv[1:]]))
