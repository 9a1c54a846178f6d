"""Starting job processes and telling whether one is still alive."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from .files import PROCESS_LOG

JOB_MODULE = "fractal_jupyter.runner.job"


class JobLauncher:
    """Starts `python -m fractal_jupyter.runner.job` in its own session.

    The processes this server started are kept, so that they can be reaped when they end
    (a zombie would still look alive); after a restart, job processes are not our children
    and init reaps them.
    """

    def __init__(self, python: str = sys.executable) -> None:
        self.python = python
        self.runner = f"{socket.gethostname()}:{os.getuid()}"
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    def start(self, job_dir: Path) -> int:
        with (job_dir / PROCESS_LOG).open("ab") as log:
            process = subprocess.Popen(
                [self.python, "-m", JOB_MODULE, str(job_dir)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=job_dir,
            )
        self._children[process.pid] = process
        return process.pid

    def reap(self) -> bool:
        """Collect the job processes of ours that ended; True if any did."""
        ended = [pid for pid, child in self._children.items() if child.poll() is not None]
        for pid in ended:
            del self._children[pid]
        return bool(ended)

    def has_children(self) -> bool:
        """True while a job process started here has not been reaped."""
        return bool(self._children)

    def is_alive(self, pid: int | None) -> bool:
        """True while `pid` is a running job process (not a zombie, not a reused pid)."""
        if pid is None:
            return False
        child = self._children.get(pid)
        if child is not None:
            if child.poll() is None:
                return True  # ours and running (maybe not yet exec'd: its cmdline is ours)
            del self._children[pid]
            return False
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError, IndexError):
            return False
        return JOB_MODULE.encode() in cmdline and state != "Z"

    def stop(self, pid: int | None, signum: signal.Signals = signal.SIGTERM) -> None:
        """Ask the job process to stop (it then stops its task processes and reports)."""
        if self.is_alive(pid):
            assert pid is not None
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signum)

    def kill_leftover_tasks(self, job_dir: Path) -> list[int]:
        """Kill task processes of a job whose job process died (they have their own sessions).

        Task command lines name their argument files, which live in the job folder.
        """
        marker = f" {job_dir}/".encode()
        killed = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = b" " + (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if marker in cmdline and int(entry.name) != os.getpid():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(int(entry.name), signal.SIGKILL)
                    killed.append(int(entry.name))
        return killed
