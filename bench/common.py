"""Benchmark plumbing: our Jupyter server as a child process, latency statistics, machine facts."""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import secrets
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = REPO_ROOT / ".venv" / "bin"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


class BenchError(RuntimeError):
    """A server misbehaved (wrong answer, failed start): the numbers would be meaningless."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _parent_pids() -> dict[int, int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name (field 2) may contain spaces and ")": fields follow the last ")".
        fields = stat[stat.rindex(")") + 2 :].split()
        parents[int(entry.name)] = int(fields[1])
    return parents


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants that are still running."""
    parents = _parent_pids()
    tree = [pid]
    for member in tree:
        tree.extend(child for child, parent in parents.items() if parent == member)
    return tree


def _status_bytes(pid: int, field: str) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of a process and its children, as the kernel reports it (VmRSS)."""
    return sum(_status_bytes(member, "VmRSS") for member in process_tree(pid))


def tree_peak_rss_bytes(pid: int) -> int:
    """The high-water marks (VmHWM) of a process and its children, summed: an upper bound."""
    return sum(_status_bytes(member, "VmHWM") for member in process_tree(pid))


def git_revision() -> str:
    """The commit of the working tree, with "+dirty" when it has uncommitted changes."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


@dataclass(frozen=True)
class Latency:
    n: int
    p50_ms: float
    p95_ms: float
    min_ms: float
    max_ms: float


def summarize(seconds: list[float]) -> Latency:
    ms = sorted(s * 1000.0 for s in seconds)
    p95 = statistics.quantiles(ms, n=20, method="inclusive")[-1] if len(ms) > 1 else ms[0]
    return Latency(
        n=len(ms),
        p50_ms=statistics.median(ms),
        p95_ms=p95,
        min_ms=ms[0],
        max_ms=ms[-1],
    )


def latency_dict(latency: Latency) -> dict[str, float]:
    return {key: round(value, 3) for key, value in asdict(latency).items()}


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _memory_mib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 0


def machine_info() -> dict[str, Any]:
    return {
        "nproc": os.cpu_count(),
        "memory_mib": _memory_mib(),
        "cpu_model": _cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "load_average": [round(load, 2) for load in os.getloadavg()],
        "httpx": httpx.__version__,
    }


def stop_process_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the leader, SIGKILL it if it lingers, then anything left in its own group."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    # The group id is the leader's pid (start_new_session): only processes we started are in it.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class OurServer:
    """`jupyter server` with fractal_jupyter on a fresh SQLite database in a temporary folder.

    Jupyter's config, data and runtime folders are temporary too, so the developer's own
    configuration is not read; the extension is enabled on the command line.
    """

    def __init__(self) -> None:
        self.token = secrets.token_hex(16)
        self.port = free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix="fractal-bench-"))
        self.log_path = self.workdir / "server.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/fractal"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"}

    @property
    def pid(self) -> int:
        if self.process is None:
            raise BenchError("our server is not running")
        return self.process.pid

    def _command(self) -> list[str]:
        return [
            str(VENV_BIN / "jupyter"),
            "server",
            "--no-browser",
            "--allow-root",
            f"--port={self.port}",
            "--ServerApp.port_retries=0",
            f"--ServerApp.token={self.token}",
            "--ServerApp.ip=127.0.0.1",
            "--ServerApp.jpserver_extensions=fractal_jupyter=True",
            f"--FractalJupyter.db_url=sqlite+aiosqlite:///{self.workdir}/fractal.db",
            f"--FractalJupyter.data_dir={self.workdir}",
        ]

    def _environment(self) -> dict[str, str]:
        environment = dict(os.environ)
        for name in ("CONFIG", "DATA", "RUNTIME"):
            folder = self.workdir / f"jupyter-{name.lower()}"
            folder.mkdir()
            environment[f"JUPYTER_{name}_DIR"] = str(folder)
        return environment

    def start(self) -> None:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self._command(),
                cwd=self.workdir,
                env=self._environment(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_alive()

    def _wait_alive(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        with httpx.Client(timeout=2.0) as probe:
            while time.monotonic() < deadline:
                if self.process is not None and self.process.poll() is not None:
                    break
                try:
                    if probe.get(f"{self.url}/api/alive/").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        raise BenchError(f"our server did not come up; log tail:\n{tail(self.log_path)}")

    def stop(self) -> None:
        if self.process is not None:
            stop_process_group(self.process)
            self.process = None
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> OurServer:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    # SIGTERM/SIGHUP unwind like Ctrl-C, so that every server is stopped on the way out.
    raise KeyboardInterrupt


def stop_on_signals() -> None:
    """Ctrl-C, SIGTERM and SIGHUP all unwind the benchmark (and stop its servers).

    SIGINT is set too: a script started in the background of a shell ignores it otherwise.
    """
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)


def report_header(script: str, argv: list[str], peer: str) -> dict[str, Any]:
    """The first keys of a results document: date, command, machine, server versions."""
    from fractal_jupyter import __version__

    return {
        "date": datetime.date.today().isoformat(),
        "command": " ".join([".venv/bin/python", script, *argv]),
        "machine": machine_info(),
        "servers": {"ours": f"fractal_jupyter {__version__} ({git_revision()})", "peer": peer},
    }
