"""`python -m pretrain <verb>`, the same as `aira pretrain <verb>`."""

import sys

from pretrain.cli import main

sys.exit(main())
