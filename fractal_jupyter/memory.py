"""Giving memory back to the system after a request that needed a lot of it.

Parsing a dataset import of 100,000 images takes a few hundred MB. Python frees the objects,
but glibc keeps the freed pages in the process unless asked to return them, so a long-lived
Jupyter server would carry that peak for its whole life.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc

# Below this many images an import's memory is small enough to leave to the allocator.
LARGE_REQUEST_IMAGES = 10_000


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


def release_free_memory() -> bool:
    """Collect garbage and return free heap pages to the system (glibc only)."""
    gc.collect()
    libc = _libc()
    if libc is None or not hasattr(libc, "malloc_trim"):
        return False
    libc.malloc_trim(0)
    return True
