"""The log of a package operation: messages and the output of the commands it runs, appended
to a file as they come, so that it can be shown while it grows."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
from datetime import UTC, datetime
from pathlib import Path

from ..file_modes import SHARED_UMASK

# How many lines of a failed command's output go into its error.
ERROR_TAIL_LINES = 15


class CollectionError(Exception):
    """A package operation failed; the message says why (it ends in the log and the API)."""


class CollectionLog:
    """The log file of one operation; commands' output is appended as it comes."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, message: str) -> None:
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
        with contextlib.suppress(OSError), self.path.open("a") as file:
            file.write(f"{stamp} - {message}\n")

    def read(self) -> str:
        try:
            return self.path.read_text(errors="replace")
        except OSError:
            return ""

    async def run(self, argv: list[str], cwd: Path, quiet: bool = False) -> str:
        """Run a command (no shell), log its output line by line, return its stdout.

        A non-zero exit raises CollectionError with the output's tail. `quiet` keeps the
        output out of the log (it is kept elsewhere, like `pip freeze`).
        """
        self.write(f"$ {shlex.join(argv)}")
        process = await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=subprocess_environment(),
            start_new_session=True,
            # The venv is read by every user of a shared tasks_dir.
            umask=SHARED_UMASK,
        )
        assert process.stdout is not None
        lines: list[str] = []
        try:
            with self.path.open("a") as file:
                async for raw in process.stdout:
                    line = raw.decode(errors="replace")
                    lines.append(line)
                    if not quiet:
                        file.write(line)
                        file.flush()
            returncode = await process.wait()
        except asyncio.CancelledError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await asyncio.shield(process.wait())
            raise
        if returncode != 0:
            tail = "".join(lines[-ERROR_TAIL_LINES:]).strip()
            raise CollectionError(
                f"command `{shlex.join(argv[:4])} ...` failed with exit code {returncode}:\n{tail}"
            )
        return "".join(lines)


def subprocess_environment() -> dict[str, str]:
    """The server's environment without what would make pip or Python use another venv."""
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PIP_REQUIRE_VIRTUALENV")
    }
    environment.update(PIP_NO_INPUT="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONUNBUFFERED="1")
    return environment
