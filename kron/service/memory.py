"""What a long-running daemon gives back to the system after a load: freed heap pages.

Loading job files makes short-lived garbage by the megabyte (parsed documents, the schema's
compiled validator being generated). Python frees it, but glibc's allocator keeps the freed
pages mapped unless they happen to lie at the top of the heap, so a daemon's resident size
would stay at its peak for good. `malloc_trim(0)` returns every whole free page: ~9 MB after a
first load of 1,000 files. It costs well under a millisecond.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import sys
from collections.abc import Callable

__all__ = ["give_back_memory"]

log = logging.getLogger("kron.daemon")


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim): nothing to do
        return None
    return trim


def give_back_memory() -> None:
    """Return the heap's free pages to the system, where the C library can (glibc)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
