"""`python -m satellite` is the `satellite` command."""

import sys

from satellite.commands.cli import main

sys.exit(main())
