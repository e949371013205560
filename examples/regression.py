"""`python examples/regression.py [flags]` = `python -m funcnn regression [flags]`.

The run itself is funcnn/examples/regression.py, a short script of funcnn calls (kept inside the
package so that the installed `funcnn` command has it too).
"""
import sys

from funcnn.__main__ import main

if __name__ == "__main__":
    sys.exit(main(["regression", *sys.argv[1:]]))
