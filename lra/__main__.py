"""`python -m lra <verb>`, the same as `aira lra <verb>`."""

import sys

from lra.cli import main

sys.exit(main())
