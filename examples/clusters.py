"""`python examples/clusters.py [flags]` = `python -m funcnn clusters [flags]`.

The run itself is funcnn/examples/clusters.py, a short script of funcnn calls (kept inside the
package so that the installed `funcnn` command has it too).
"""
import sys

from funcnn.__main__ import main

if __name__ == "__main__":
    sys.exit(main(["clusters", *sys.argv[1:]]))
