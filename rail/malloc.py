"""Large buffers go back to the operating system when freed (glibc's malloc).

glibc serves an allocation over its mmap threshold (128 KB at start) with its own
mapping, unmapped on free. But each such free raises the threshold to the freed size (up
to 32 MB), so after the first large message every later one of that size comes from the
heap instead, and a heap fragmented by other objects keeps the pages: the process stays
at its peak after the messages are gone, and peaks higher as new buffers cannot reuse
the holes. Fixing the threshold turns that off (``mallopt(M_MMAP_THRESHOLD)``). The
price is a system call and fresh zeroed pages for each buffer over it, which only large
messages pay. ``bench/memory.py`` shows the effect (about a third less peak memory with
25 MB messages).
"""

from __future__ import annotations

import ctypes

__all__ = ["MMAP_THRESHOLD", "return_freed_buffers"]

MMAP_THRESHOLD = 1024 * 1024
"""Allocations this large or larger are mapped and unmapped on their own."""

_M_MMAP_THRESHOLD = -3  # from glibc's malloc.h


def return_freed_buffers(threshold: int = MMAP_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold at ``threshold``; False where there is no glibc
    ``mallopt`` (other C libraries) or it refused."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, threshold))
