"""Give freed heap memory back to the operating system (glibc's ``malloc_trim``), where there is such a call.

Many small arrays freed one by one (decoded images moved into one array) leave free pages in the middle of the
heap, which glibc keeps resident until something asks for them; ``malloc_trim(0)`` returns every whole free
page. On other C libraries (macOS, Windows, musl without it) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from typing import Any


@functools.cache
def _libc() -> Any:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def release_freed_memory() -> bool:
    """Return freed heap pages to the OS; True where the C library could be asked to."""
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True
