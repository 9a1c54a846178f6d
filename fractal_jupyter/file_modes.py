"""Modes of the files and folders the server creates, whatever the umask it was started with.

A Jupyter server inherits its umask from the spawner (often 022, sometimes 000), so modes are
set explicitly: the data folder, the SQLite database and the token signing key are the
user's alone; the folders of a shared `tasks_dir` are readable by everyone and writable only
by the collecting account (docs/deploy-jupyterhub.md, "Files and their modes").
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from pathlib import Path

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
SHARED_DIR_MODE = 0o755
# The umask of the processes that write a shared collection (pip, venv): files 0644,
# folders 0755, whatever the collecting server's own umask.
SHARED_UMASK = 0o022

log = logging.getLogger("fractal_jupyter")


def make_private_dir(path: Path, *, warn_if_open: bool = False) -> None:
    """Create `path` with mode 0700 (missing parents get the usual modes).

    An existing folder keeps its mode (an admin may have chosen it); with `warn_if_open`, a
    warning says when others can read it.
    """
    try:
        _make_dir(path, PRIVATE_DIR_MODE)
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if warn_if_open and mode & 0o077:
            log.warning(
                "fractal_jupyter: %s has mode %s: other users may read the files in it "
                "(chmod 700 it unless that is meant)",
                path,
                oct(mode),
            )


def make_shared_dir(path: Path) -> None:
    """Create `path` and its missing parents with mode 0755; FileExistsError if it exists."""
    if not path.parent.is_dir():
        with contextlib.suppress(FileExistsError):
            make_shared_dir(path.parent)
    _make_dir(path, SHARED_DIR_MODE)


def _make_dir(path: Path, mode: int) -> None:
    if not path.parent.is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)
    path.mkdir(mode=mode)
    # mkdir's mode goes through the umask; set it exactly (the folder is new and ours).
    os.chmod(path, mode)


def make_private_file(path: Path) -> None:
    """Create `path` empty with mode 0600 if missing; an existing file of ours is set to
    0600 when others could read or write it."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    except FileExistsError:
        restrict_file(path)
        return
    try:
        os.fchmod(descriptor, PRIVATE_FILE_MODE)
    finally:
        os.close(descriptor)


def restrict_file(path: Path) -> None:
    """Mode 0600 for an existing file of ours that others could read or write."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return
    if stat.S_IMODE(info.st_mode) & 0o077 and info.st_uid == os.getuid():
        os.chmod(path, PRIVATE_FILE_MODE)
