"""How the SLURM executor reaches the cluster: commands to run and files to move.

`LocalTransport` is the `slurm` backend (the SLURM client is on this host and the job folder is
on a filesystem the nodes share); an SSH transport (`runner/ssh.py`) is the `slurm_ssh` backend
(commands on a login node, files over SFTP). The executor only speaks this protocol, so both
backends share one implementation of submission, polling, cancellation and results.

Paths on the "remote" side are strings (POSIX paths on the cluster); local ones are `Path`s.
A transport whose remote side is this machine treats `put`/`get` between identical paths as
nothing to do.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: str
    stderr: str

    def describe(self) -> str:
        """The command's error output (or its output) for an error message."""
        text = (self.stderr.strip() or self.stdout.strip())[-2000:]
        return f"exit code {self.returncode}" + (f": {text}" if text else "")


class TransportError(Exception):
    """The other side could not be reached (connection lost, timeout, authentication...).

    Not raised for a command that ran and failed: that is a `CommandResult` with a non-zero
    return code. The executor may retry an operation that raised this.
    """


class Transport(Protocol):
    def run(self, argv: list[str], *, timeout: float | None = None) -> CommandResult:
        """Run a command (no shell on this side; argv is quoted as needed on the other)."""
        ...

    def put(self, local: Path, remote: str) -> None:
        """Copy a local file to the remote path (its folder exists)."""
        ...

    def get(self, remote: str, local: Path) -> None:
        """Copy a remote file to a local path (its folder exists); FileNotFoundError if absent."""
        ...

    def makedirs(self, remote: str) -> None:
        """Create a remote folder and its parents (no error if it exists)."""
        ...

    def exists(self, remote: str) -> bool: ...

    def close(self) -> None: ...


class LocalTransport:
    """Commands on this host, files on this host's filesystem."""

    def run(self, argv: list[str], *, timeout: float | None = None) -> CommandResult:
        try:
            completed = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except FileNotFoundError:
            return CommandResult(127, "", f"{argv[0]}: command not found")
        except subprocess.TimeoutExpired as error:
            raise TransportError(f"{argv[0]} did not answer within {timeout} s") from error
        return CommandResult(completed.returncode, completed.stdout, completed.stderr)

    def put(self, local: Path, remote: str) -> None:
        self._copy(local, Path(remote))

    def get(self, remote: str, local: Path) -> None:
        self._copy(Path(remote), local)

    @staticmethod
    def _copy(source: Path, target: Path) -> None:
        if os.path.abspath(source) == os.path.abspath(target):
            if not source.exists():
                raise FileNotFoundError(str(source))
            return
        shutil.copyfile(source, target)

    def makedirs(self, remote: str) -> None:
        os.makedirs(remote, exist_ok=True)

    def exists(self, remote: str) -> bool:
        return os.path.exists(remote)

    def close(self) -> None:
        pass
