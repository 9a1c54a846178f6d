"""Starting job processes and telling whether one is still alive."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

from .files import PROCESS_LOG
from .heartbeat import HEARTBEAT_TIMEOUT_SECONDS
from .placement import PlacedJobWatch, SlurmPlacement, slurm_id_of
from .placement import runner_of as placed_runner
from .settings import Backend, SlurmSettings

JOB_MODULE = "fractal_jupyter.runner.job"
# Forks job processes from a process that imported them once (runner/job_starter.py); its
# name begins with JOB_MODULE, so its job processes' command lines name JOB_MODULE too.
JOB_STARTER_MODULE = "fractal_jupyter.runner.job_starter"
STARTER_ANSWER_SECONDS = 5.0


def this_runner() -> str:
    """`host:uid`: the runner of the jobs this server starts. It follows those by their pids,
    and the jobs of the same user started on other hosts by their heartbeats."""
    return f"{socket.gethostname()}:{os.getuid()}"


def runners_of_this_user() -> str:
    """The runners of this user on any host, as a LIKE pattern."""
    return f"%:{os.getuid()}"


class JobLauncher:
    """Starts `python -m fractal_jupyter.runner.job` in its own session.

    The processes this server started are kept, so that they can be reaped when they end
    (a zombie would still look alive); after a restart, job processes are not our children
    and init reaps them.
    """

    def __init__(
        self,
        python: str = sys.executable,
        heartbeat_timeout: float = HEARTBEAT_TIMEOUT_SECONDS,
        slurm_placement: SlurmPlacement | None = None,
    ) -> None:
        self.python = python
        # The silence after which a job process of another host is taken for dead.
        self.heartbeat_timeout = heartbeat_timeout
        # Job processes of the `slurm` backend start as SLURM jobs of their own (placement.py);
        # those of any server of the user are followed whatever this server's setting.
        self.slurm_placement = slurm_placement
        self.placed_jobs = PlacedJobWatch(
            slurm_placement or SlurmPlacement(SlurmSettings(), python), heartbeat_timeout
        )
        self.runner = this_runner()
        self.user_runners = runners_of_this_user()
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._starter: subprocess.Popen[bytes] | None = None
        self._starter_ready = False
        self._starter_lock = threading.Lock()

    def places_on_slurm(self, backend: Backend) -> bool:
        """Whether a job of `backend` gets its job process as a SLURM job (`start_on_slurm`)."""
        return self.slurm_placement is not None and backend is Backend.SLURM

    def start_on_slurm(self, job_dir: Path, job_id: int, account: str | None) -> tuple[int, str]:
        """sbatch the job process: its SLURM job id and its runner."""
        assert self.slurm_placement is not None
        slurm_id = self.slurm_placement.submit(job_dir, job_id, account)
        return slurm_id, placed_runner(slurm_id, os.getuid())

    def abandon(self, pid: int | None, runner: str) -> None:
        """End a job process that was started but is not to run (its row could not record
        it, or the job ended meanwhile)."""
        slurm_id = slurm_id_of(runner)
        if slurm_id is None:
            self.stop(pid)
        elif self.slurm_placement is not None:
            with contextlib.suppress(OSError):
                self.slurm_placement.cancel(slurm_id)

    def stop_placed(self, runner: str) -> None:
        """A stop of a job process placed on SLURM that has not started yet: it never will
        (one that runs reads the stop request in its folder)."""
        slurm_id = slurm_id_of(runner)
        if slurm_id is not None:
            with contextlib.suppress(OSError):
                self.placed_jobs.placement.cancel_if_pending(slurm_id)

    def start(self, job_dir: Path, warm: bool = False) -> int:
        """Start the job process of `job_dir`; its pid. `warm`: fork it from the job starter
        when that one is ready (it is started by the first warm start, which spawns)."""
        if warm:
            pid = self._start_warm(job_dir)
            if pid is not None:
                return pid
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

    def _start_warm(self, job_dir: Path) -> int | None:
        """The pid of a job process forked by the job starter; None when there is no ready
        starter (then one is started for the next jobs, if none runs)."""
        with self._starter_lock:
            starter = self._starter
            if starter is None or starter.poll() is not None:
                self._open_starter(job_dir.parent)
                return None
            assert starter.stdin is not None and starter.stdout is not None
            if not self._starter_ready:
                if not select.select([starter.stdout], [], [], 0)[0]:
                    return None  # still importing
                self._starter_ready = self._answer(starter) == {"ready": True}
                if not self._starter_ready:
                    self._close_starter()
                    return None
            request = {"job_dir": str(job_dir), "env": dict(os.environ)}
            try:
                starter.stdin.write(json.dumps(request).encode() + b"\n")
                starter.stdin.flush()
            except OSError:
                self._close_starter()
                return None
            answer = self._answer(starter)
            if "pid" not in answer:
                self._close_starter()
                return None
            return int(answer["pid"])

    @staticmethod
    def _answer(starter: subprocess.Popen[bytes]) -> dict[str, int]:
        assert starter.stdout is not None
        if not select.select([starter.stdout], [], [], STARTER_ANSWER_SECONDS)[0]:
            return {}
        try:
            answer: dict[str, int] = json.loads(starter.stdout.readline() or b"{}")
        except json.JSONDecodeError:
            return {}
        return answer

    def _open_starter(self, log_dir: Path) -> None:
        self._close_starter()
        with contextlib.suppress(OSError), (log_dir / "job-starter.log").open("ab") as log:
            # Its own session: a Ctrl-C at the server's terminal is not for it. It ends when
            # the server does (its stdin closes), and its job processes go on.
            self._starter = subprocess.Popen(
                [self.python, "-m", JOB_STARTER_MODULE],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,
            )

    def _close_starter(self) -> None:
        starter, self._starter, self._starter_ready = self._starter, None, False
        if starter is None:
            return
        for stream in (starter.stdin, starter.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        with contextlib.suppress(OSError):
            starter.kill()
        starter.wait()

    def close(self) -> None:
        """At the server's end: the job starter goes (its job processes do not)."""
        with self._starter_lock:
            self._close_starter()

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
