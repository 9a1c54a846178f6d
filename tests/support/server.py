"""A real `jupyter fractal` process on a data folder, as a user would run it."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from fractal_jupyter.demo import DemoServer, free_port, server_command


class ServerProcess:
    """`jupyter fractal` serving `data_dir` (its root and its state); `start()`, `stop()`."""

    def __init__(self, data_dir: Path, *options: str) -> None:
        self.data_dir = data_dir
        self.port = free_port(0)
        self.token = "test-server-token"
        self.options = options
        self.process: subprocess.Popen[bytes] | None = None
        self.api = DemoServer(f"http://127.0.0.1:{self.port}/", self.token)

    def start(self) -> None:
        command = server_command(
            self.data_dir,
            self.port,
            self.token,
            "--FractalJupyter.job_poll_interval=0.1",
            "--FractalJupyter.submit_rate_limit_seconds=0",
            *self.options,
        )
        log = (self.data_dir / "server.log").open("ab")
        self.process = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True)
        self.api.wait_alive(self.process)

    def stop(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=30)
        self.process = None
