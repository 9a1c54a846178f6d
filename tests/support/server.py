"""A real `jupyter fractal` process on a data folder, as a user would run it."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
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

    def start(self, *, fractal_request: bool = True) -> None:
        """Start and wait for an answer: from `fractal/api/alive/`, or with `fractal_request`
        False from Jupyter's own `/api/status` (no Fractal request reaches the server)."""
        defaults = {
            "job_poll_interval": "0.1",
            "submit_rate_limit_seconds": "0",
            # Each test's server has its own environment: a warm starter kept for later jobs
            # would serve none (a test that keeps them says so in its options).
            "warm_start_keep_seconds": "0",
        }
        command = server_command(
            self.data_dir,
            self.port,
            self.token,
            *(
                f"--FractalJupyter.{name}={value}"
                for name, value in defaults.items()
                if not any(
                    option.startswith(f"--FractalJupyter.{name}=") for option in self.options
                )
            ),
            *self.options,
        )
        log = (self.data_dir / "server.log").open("ab")
        self.process = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True)
        if fractal_request:
            self.api.wait_alive(self.process)
        else:
            self._wait_for_jupyter()

    def _wait_for_jupyter(self, timeout: float = 60.0) -> None:
        assert self.process is not None
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/api/status",
            headers={"Authorization": f"token {self.token}"},
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"the server exited ({self.process.returncode})"
            try:
                with urllib.request.urlopen(request, timeout=5):
                    return
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.2)
        raise AssertionError(f"the server did not answer within {timeout:.0f} s")

    def stop(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=30)
        self.process = None
