"""Freed memory handed back to the system (runtime/memory.py), on this machine's glibc."""

from __future__ import annotations

import ctypes
import threading
from pathlib import Path

from satellite.runtime.memory import release_freed_memory

CHUNK = 64 * 1024  # under glibc's mmap threshold: from the thread's arena, like a decode's
CHUNKS = 1600  # 100 MiB


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_memory_freed_below_a_live_block_goes_back_to_the_system() -> None:
    """Free chunks under one still in use (an arena's top cannot shrink past it) stay
    resident until released, as a decode's working memory did between sessions."""
    libc = ctypes.CDLL(None)
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    figures: dict[str, float] = {}

    def on_a_thread() -> None:  # the pipeline's arena, not the main one
        chunks = [libc.malloc(CHUNK) for _ in range(CHUNKS)]
        for chunk in chunks:
            ctypes.memset(chunk, 1, CHUNK)
        figures["used"] = rss_mib()
        for chunk in chunks[:-1]:
            libc.free(chunk)
        figures["freed"] = rss_mib()
        release_freed_memory()
        figures["released"] = rss_mib()
        libc.free(chunks[-1])

    thread = threading.Thread(target=on_a_thread)
    thread.start()
    thread.join()
    assert figures["used"] - figures["freed"] < 20, figures  # freed, but still resident
    assert figures["freed"] - figures["released"] > 80, figures
