"""The worker of one SLURM job: `python -m fractal_jupyter.runner.remote <batch file>`.

It runs on a compute node as the user. The batch file (written by `runner/slurm.py` with
cloudpickle) holds the task calls of this SLURM job and how many may run at once. Each call
runs exactly as on the local backend (`runner/call.py`: args file, task process, log, output),
and the outcome of every call goes to `<prefix>.results.json`, written last and atomically: a
SLURM job that ends without that file was killed (cancelled, out of memory, timeout, node
failure). With `archive` set (the job folder is not shared with the server), the files of the
batch are also packed into one tar for the server to fetch in one transfer.

The calls of a command `<python> <script.py>` fork from a warm starter (`runner/warm.py`)
unless the batch's `warm_start` is off or the task's meta opts out; each call's result says
how its command's calls started (`note`), for the job log.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import signal
import sys
import tarfile
import threading
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType
from typing import Any

from .._version import __version__
from .call import call_paths, run_call, task_environment
from .interface import JSON, TaskCall, TaskFailed
from .warm import WarmStarters

# After a SIGTERM (scancel), the longest wait for the calls' threads before the worker exits.
TERM_EXIT_SECONDS = 3.0


class Batch:
    def __init__(self, data: dict[str, Any]) -> None:
        self.job_dir = Path(data["job_dir"])
        self.folder = self.job_dir / data["folder"]
        self.calls: list[TaskCall] = data["calls"]
        self.parallel: int = max(1, int(data["parallel"]))
        self.results_name: str = data["results"]
        self.archive_name: str | None = data.get("archive")
        self.version: str = data["version"]
        self.warm_start: bool = data.get("warm_start", True)
        self.starters = WarmStarters(
            self.calls,
            enabled=self.warm_start,
            log_dir=self.job_dir,
            env=task_environment(),
            on_note=lambda note: None,  # read from `starters.notes` for each call's result
        )
        self.running: set[int] = set()  # the pids (and process groups) of running calls
        self.failed = threading.Event()
        self.terminating = threading.Event()
        self.lock = threading.Lock()

    def run_one(self, call: TaskCall) -> JSON:
        if self.failed.is_set():
            return {"status": "skipped"}

        def started(pid: int) -> None:
            with self.lock:
                self.running.add(pid)
            if self.terminating.is_set():  # started while the worker was being cancelled
                self.kill_tasks()

        try:
            output = run_call(self.job_dir, call, started, self.starters)
            result: JSON = {"status": "done", "output": output}
        except TaskFailed as error:
            self.failed.set()
            result = {"status": "failed", "reason": error.reason, "log_tail": error.log_tail}
        except Exception:
            self.failed.set()
            result = {"status": "failed", "reason": traceback.format_exc(), "log_tail": ""}
        note = self.starters.notes.get(call.command)
        return result if note is None else {**result, "note": note}

    def kill_tasks(self) -> None:
        with self.lock:
            running = list(self.running)
        for pid in running:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)

    def run(self) -> list[JSON]:
        if self.version != __version__:
            reason = (
                f"version mismatch: fractal_jupyter {__version__} on the node "
                f"({sys.executable}) is not the server's {self.version}; remote workers need "
                "exactly the server's version: install it into a prefix of its own and point "
                "slurm_python / slurm_ssh_python at it (docs/deploy-jupyterhub.md)"
            )
            return [{"status": "failed", "reason": reason, "log_tail": ""} for _ in self.calls]
        with self.starters, ThreadPoolExecutor(min(self.parallel, len(self.calls)) or 1) as pool:
            return list(pool.map(self.run_one, self.calls))

    def write(self, results: list[JSON]) -> None:
        path = self.folder / self.results_name
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(results))
        os.replace(temporary, path)
        if self.archive_name is not None:
            self.pack()

    def pack(self) -> None:
        assert self.archive_name is not None
        archive = self.folder / self.archive_name
        temporary = archive.with_suffix(".tmp")
        with tarfile.open(temporary, "w") as tar:
            for call in self.calls:
                for path in call_paths(self.job_dir, call):
                    if path.exists():
                        tar.add(path, arcname=path.name)
            tar.add(self.folder / self.results_name, arcname=self.results_name)
        os.replace(temporary, archive)


def kill_descendants() -> None:
    """SIGKILL every descendant of ours and the group each one leads, even one not yet known
    to `started`: also the calls that a warm starter forked (their own sessions, the starter
    their parent). Once SIGKILLed, a starter forks no more."""
    children: dict[str, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
        except (OSError, IndexError):
            continue
        children.setdefault(parent, []).append(entry.name)
    found = list(children.get(str(os.getpid()), []))
    for pid in found:  # grows while it is walked: the whole tree
        found.extend(children.get(pid, []))
    for pid in found:
        for kill in (os.killpg, os.kill):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                kill(int(pid), signal.SIGKILL)


def exit_now(code: int) -> None:
    kill_descendants()
    os._exit(code)


def main(batch_file: Path) -> int:
    with batch_file.open("rb") as stream:
        batch = Batch(pickle.load(stream))

    def on_term(signum: int, frame: FrameType | None) -> None:
        # scancel: the task processes have their own sessions; end them with us. No exit
        # here: a thread may be starting a process right now (a call whose warm starter was
        # just killed falls back to spawning), and `started` kills it once it exists, which
        # an exit before would leave running. The threads end soon: no call starts any more
        # and those running are killed; the timer is for a thread that does not.
        batch.terminating.set()
        batch.failed.set()
        batch.kill_tasks()
        kill_descendants()
        exit_timer = threading.Timer(TERM_EXIT_SECONDS, exit_now, [128 + signum])
        exit_timer.daemon = True
        exit_timer.start()

    signal.signal(signal.SIGTERM, on_term)
    batch.folder.mkdir(parents=True, exist_ok=True)
    results = batch.run()
    if batch.terminating.is_set():
        kill_descendants()  # started while the threads ended, if any (killed by `started`)
        return 128 + signal.SIGTERM
    batch.write(results)
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
