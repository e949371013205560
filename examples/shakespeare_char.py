"""`python examples/shakespeare_char.py [flags]` = `python -m funcnn shakespeare-char [flags]`.

The run itself is funcnn/examples/shakespeare_char.py, a short script of funcnn calls (kept
inside the package so that the installed `funcnn` command has it too).
"""
import sys

from funcnn.__main__ import main

if __name__ == "__main__":
    sys.exit(main(["shakespeare-char", *sys.argv[1:]]))
