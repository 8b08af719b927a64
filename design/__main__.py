"""`python -m design ...` = `aira design ...`."""

import sys

from design.cli import main

sys.exit(main())
