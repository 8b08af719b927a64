"""`python -m bench.gpu_check`, what `make gpu-check` runs."""

import sys

from bench.gpu_check.cli import main

sys.exit(main())
