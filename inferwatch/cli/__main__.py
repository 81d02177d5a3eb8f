"""`python -m inferwatch.cli ...`: the `inferwatch` command."""

import sys

from inferwatch.cli import main

sys.exit(main())
