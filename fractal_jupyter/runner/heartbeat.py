"""A job process's sign of life for servers on other hosts, and their way to stop it.

A server follows the jobs of its own runner (`host:uid`) by their pids. The next server of the
same user may run on another host (batchspawner starts each server in a SLURM allocation,
usually on another node than the last): it sees the job folder (a shared filesystem) but not
the process. So the job process touches `heartbeat` in its folder every `HEARTBEAT_SECONDS`,
and stops itself, as on SIGTERM, when it finds `stop-requested` there.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from .files import HEARTBEAT_FILE, STOP_REQUEST_FILE

HEARTBEAT_SECONDS = 5.0
# The silence after which a server on another host takes a job process for dead (by default,
# `FractalJupyter.job_heartbeat_timeout`): many beats, so that a slow file server, or clocks a
# few seconds apart, kill nothing.
HEARTBEAT_TIMEOUT_SECONDS = 60.0


class Heartbeat:
    """In the job process: a thread that touches the heartbeat file, and calls `on_stop`
    (once) when a stop was requested."""

    def __init__(
        self, job_dir: Path, on_stop: Callable[[], None], interval: float = HEARTBEAT_SECONDS
    ) -> None:
        self.path = job_dir / HEARTBEAT_FILE
        self.stop_request = job_dir / STOP_REQUEST_FILE
        self.on_stop = on_stop
        self.interval = interval
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        # Who beats, for the message of a server that finds it silent.
        with contextlib.suppress(OSError):
            self.path.write_text(f"{socket.gethostname()} pid {os.getpid()}\n")
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._closed.set()
        self._thread.join()

    def _run(self) -> None:
        stop_seen = False
        while not self._closed.wait(self.interval):
            with contextlib.suppress(OSError):
                os.utime(self.path)
            if not stop_seen and self.stop_request.exists():
                stop_seen = True
                self.on_stop()


def silent_for(job_dir: Path, now: float | None = None) -> float | None:
    """Seconds since the job process's last heartbeat; None when it never beat (a job
    process older than heartbeats, or one not started yet)."""
    try:
        beat = (job_dir / HEARTBEAT_FILE).stat().st_mtime
    except OSError:
        return None
    return max(0.0, (time.time() if now is None else now) - beat)


def who_beats(job_dir: Path) -> str:
    """`<host> pid <pid>`, as the job process wrote it; "" when unknown."""
    try:
        return (job_dir / HEARTBEAT_FILE).read_text().strip()
    except OSError:
        return ""


def request_stop(job_dir: Path) -> None:
    """Ask the job process of `job_dir`, wherever it runs, to stop (within a heartbeat)."""
    (job_dir / STOP_REQUEST_FILE).write_text(f"asked at {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
