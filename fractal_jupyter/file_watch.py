"""Being told that named files changed in some folders, without waking up while nothing does.

On Linux this is inotify, called through ctypes (three libc functions; its file descriptor is
read by the event loop). Elsewhere, or when the kernel refuses another inotify instance, the
files are looked at with `stat`: every `quick` seconds while `busy`, else backing off to `slow`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import logging
import os
import struct
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol

# From <sys/inotify.h>.
IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
# struct inotify_event: int wd; uint32_t mask, cookie, len; char name[len]
EVENT_HEADER = struct.Struct("iIII")
WATCH_MASK = IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_ONLYDIR

log = logging.getLogger(__name__)


class FileWatch(Protocol):
    def set_folders(self, folders: Iterable[Path], busy: bool) -> None:
        """Watch exactly these folders (a missing one is skipped); `busy`: react quickly."""

    def close(self) -> None: ...


def watch_files(
    names: Iterable[str],
    on_change: Callable[[], None],
    quick: float = 0.05,
    slow: float = 5.0,
) -> FileWatch:
    """Call `on_change` (on the running event loop) when a file called one of `names` is
    written, created, moved in or touched in a watched folder, or when changes may have been
    lost (the kernel's queue overflowed, a watched folder went away)."""
    if sys.platform.startswith("linux"):
        try:
            return InotifyWatch(names, on_change)
        except OSError as error:
            log.warning(
                "fractal_jupyter: no inotify (%s); looking at files every %s s", error, slow
            )
    return PollingWatch(names, on_change, quick, slow)


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    if not hasattr(libc, "inotify_init1"):
        raise OSError(errno.ENOSYS, "libc has no inotify_init1")
    libc.inotify_init1.argtypes = [ctypes.c_int]
    libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    libc.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
    return libc


class InotifyWatch:
    def __init__(self, names: Iterable[str], on_change: Callable[[], None]) -> None:
        self._libc = _libc()
        self._names = frozenset(name.encode() for name in names)
        self._on_change = on_change
        self._loop = asyncio.get_running_loop()
        # IN_NONBLOCK and IN_CLOEXEC are O_NONBLOCK and O_CLOEXEC, whose values vary by arch.
        self._fd: int = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self._fd < 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))
        self._watches: dict[Path, int] = {}
        self._loop.add_reader(self._fd, self._read)

    def set_folders(self, folders: Iterable[Path], busy: bool) -> None:
        wanted = set(folders)
        for folder in self._watches.keys() - wanted:
            # Fails harmlessly when the folder is gone (the kernel dropped the watch).
            self._libc.inotify_rm_watch(self._fd, self._watches.pop(folder))
        for folder in wanted - self._watches.keys():
            descriptor = self._libc.inotify_add_watch(self._fd, os.fsencode(folder), WATCH_MASK)
            if descriptor >= 0:
                self._watches[folder] = descriptor

    def _read(self) -> None:
        try:
            data = os.read(self._fd, 64 * 1024)
        except (BlockingIOError, InterruptedError):
            return
        changed = False
        offset = 0
        while offset + EVENT_HEADER.size <= len(data):
            descriptor, mask, _cookie, length = EVENT_HEADER.unpack_from(data, offset)
            start = offset + EVENT_HEADER.size
            name = data[start : start + length].rstrip(b"\0")
            offset = start + length
            if mask & IN_IGNORED:
                # The folder was removed: forget the watch, so that it can be set again.
                for folder, known in list(self._watches.items()):
                    if known == descriptor:
                        del self._watches[folder]
                changed = True
            elif mask & IN_Q_OVERFLOW or name in self._names:
                changed = True
        if changed:
            self._on_change()

    def close(self) -> None:
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1
            self._watches.clear()


class PollingWatch:
    def __init__(
        self, names: Iterable[str], on_change: Callable[[], None], quick: float, slow: float
    ) -> None:
        self._names = tuple(names)
        self._on_change = on_change
        self._quick = quick
        self._slow = slow
        self._folders: tuple[Path, ...] = ()
        self._busy = False
        self._task = asyncio.ensure_future(self._poll())

    def set_folders(self, folders: Iterable[Path], busy: bool) -> None:
        self._folders = tuple(folders)
        self._busy = busy

    def _stamps(self) -> dict[Path, tuple[int, int]]:
        stamps = {}
        for folder in self._folders:
            for name in self._names:
                with contextlib.suppress(OSError):
                    status = (folder / name).stat()
                    stamps[folder / name] = (status.st_mtime_ns, status.st_size)
        return stamps

    async def _poll(self) -> None:
        delay = self._quick
        before = self._stamps()
        while True:
            await asyncio.sleep(delay)
            now = self._stamps()
            if now != before:
                # A file of a folder watched only since the last look counts as a change too:
                # one needless wake-up, never a missed one.
                self._on_change()
                delay = self._quick
            else:
                delay = self._quick if self._busy else min(delay * 2, self._slow)
            before = now

    def close(self) -> None:
        self._task.cancel()
