"""`make demo` (python -m fractal_jupyter.demo) ended by SIGTERM or SIGHUP ends its server too.

The server runs in a session of its own, so a signal to the demo alone never reaches it: the
demo has to stop it, whether it is still seeding or already serving.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fractal_jupyter.demo import free_port

REPO = Path(__file__).resolve().parents[1]
TIMEOUT_SECONDS = 300.0  # the demo runs a whole job first: minutes on a loaded CI machine


def children_of(pid: int) -> list[int]:
    listing = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, check=False
    )
    return [int(word) for word in listing.stdout.split()]


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1.0)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def wait_for(what: str, condition: object, timeout: float = TIMEOUT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.1)


def read_until(process: subprocess.Popen[bytes], marker: bytes) -> bytes:
    """The demo's output up to the line that contains `marker`."""
    assert process.stdout is not None
    seen = b""
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while marker not in seen:
        assert process.poll() is None, f"the demo exited early: {seen.decode()}"
        assert time.monotonic() < deadline, f"no {marker!r} in {seen.decode()}"
        ready, _, _ = select.select([process.stdout], [], [], 1.0)
        if ready:
            seen += os.read(process.stdout.fileno(), 65536)
    return seen


@pytest.mark.parametrize(
    ("signum", "serving"),
    [(signal.SIGTERM, True), (signal.SIGHUP, False)],
    ids=["SIGTERM while serving", "SIGHUP while seeding"],
)
def test_a_stopped_demo_stops_its_server(tmp_path, signum, serving):
    port = free_port(0)
    command = [sys.executable, "-m", "fractal_jupyter.demo", "--data-dir", str(tmp_path)]
    demo = subprocess.Popen(
        [*command, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=REPO,
    )
    server_pid = 0
    try:
        if serving:
            output = read_until(demo, b"Ctrl-C stops the server.")
            assert f"http://127.0.0.1:{port}/".encode() in output
        else:
            wait_for("the demo's server to listen", lambda: port_open(port))
        (server_pid,) = children_of(demo.pid)
        demo.send_signal(signum)
        assert demo.wait(timeout=30) == 128 + signum
        assert not Path(f"/proc/{server_pid}").exists(), "the server outlived the demo"
        assert not port_open(port)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        if server_pid and Path(f"/proc/{server_pid}").exists():
            # The server leads a session (and process group) of its own.
            os.killpg(server_pid, signal.SIGKILL)
