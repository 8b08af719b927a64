"""`python -m models ...` is `aira models ...`."""

import sys

from models.cli import main

sys.exit(main())
