"""`python examples/fashion_cnn.py [flags]` = `python -m funcnn fashion-cnn [flags]`.

The run itself is funcnn/examples/fashion_cnn.py, a short script of funcnn calls (kept inside the
package so that the installed `funcnn` command has it too).
"""
import sys

from funcnn.__main__ import main

if __name__ == "__main__":
    sys.exit(main(["fashion-cnn", *sys.argv[1:]]))
