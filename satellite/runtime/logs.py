"""Logging setup for the entry point: the journal under systemd, plain stderr lines otherwise."""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Mapping

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def under_systemd(environ: Mapping[str, str]) -> bool:
    """Whether systemd started us with its journal as stderr (JOURNAL_STREAM/INVOCATION_ID)."""
    return bool(environ.get("JOURNAL_STREAM") or environ.get("INVOCATION_ID"))


def setup_logging(
    *,
    verbose: bool = False,
    quiet: bool = False,
    journal_fields: Mapping[str, str] | None = None,
) -> None:
    """Configure the root handler once, at the entry point only.

    With `journal_fields` (e.g. ROOM_ID, SATELLITE_ID) records go to the journal with those
    fields; a record's own upper-case extras (SESSION_ID, UTT_ID) are added by the handler.
    """
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    handler = _journal_handler(journal_fields) if journal_fields is not None else None
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def _journal_handler(fields: Mapping[str, str]) -> logging.Handler | None:
    try:
        # By name: mypy would take the repo's systemd/ unit folder for the `systemd` package.
        journal = importlib.import_module("systemd.journal")
    except ImportError:
        return None
    handler: logging.Handler = journal.JournalHandler(SYSLOG_IDENTIFIER="satellite", **fields)
    return handler
