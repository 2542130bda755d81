"""`python -m satellite` is the `satellite` command."""

import sys

from satellite.cli import main

sys.exit(main())
