"""Memory the process freed, handed back to the system between sessions (glibc only).

A decode leaves its working memory (tens of MiB on the pipeline thread's malloc arena) free
but resident: glibc returns an arena's pages only from its top, and seldom. Between sessions
`malloc_trim` gives every free page back, so an idle satellite holds what it uses, not what
its last command needed.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim = ctypes.CDLL(None).malloc_trim  # the C library the process runs on
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def release_freed_memory() -> None:
    """Give the pages of freed memory back to the system (~2 ms here); nothing without glibc."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
