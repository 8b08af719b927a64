"""`python -m design.autoresearch PATH [key=value ...]` = `aira design autoresearch ...`."""

import sys

from design.autoresearch.cli import main

sys.exit(main())
