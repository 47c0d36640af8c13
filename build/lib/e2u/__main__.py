"""`python -m e2u`: the `e2u` command."""

import sys

from e2u.cli import main

sys.exit(main())
