"""Python's cyclic garbage collector paused while a request builds millions of objects.

An import of 100,000 images makes several million short-lived containers (dicts, lists and
the tuples of the rows); each 700 of them start a collection, which took 0.4-0.6 s of the
3.1 s import. None of them form reference cycles, so reference counting frees them all the
same. The pause is process-wide (the collector has no other switch) and nested pauses, from
concurrent requests, end with the last one.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

_lock = threading.Lock()
_pauses = 0
_was_enabled = False


@contextlib.contextmanager
def garbage_collection_paused() -> Iterator[None]:
    global _pauses, _was_enabled
    with _lock:
        if _pauses == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _pauses += 1
    try:
        yield
    finally:
        with _lock:
            _pauses -= 1
            if _pauses == 0 and _was_enabled:
                gc.enable()
