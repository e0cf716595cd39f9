# `python -m vivit_edu ...` (and `torchrun ... -m vivit_edu ...`) runs the `vivit-edu` command. Hand-written, not exported
# from a notebook: lesson 14 (nbs/14_cli.ipynb) explains it.
import sys
from vivit_edu.cli import main

if __name__ == "__main__": sys.exit(main())
