"""python -m slurm <verb>: the same as `aira slurm <verb>` (slurm/cli.py)."""

import sys

from slurm.cli import main

if __name__ == "__main__":
    sys.exit(main())
