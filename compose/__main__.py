"""`python -m compose ...` = `aira compose ...`."""

import sys

from compose.cli import main

sys.exit(main())
