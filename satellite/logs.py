"""Logging setup for the entry point: plain stderr lines (journald comes with the systemd issue)."""

from __future__ import annotations

import logging
import sys


def setup_logging(*, verbose: bool = False, quiet: bool = False) -> None:
    """Configure the root handler once, at the entry point only."""
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
