"""The local executor: task processes on this machine, a bounded number at a time.

The calls of a task whose command is `<python> <script.py>` fork from a warm starter
(`runner/warm.py`) unless warm starts are off or the task's meta opts out. The tasks of one
package, one after the other, fork from one starter, which lives as long as the job, or is
kept for later jobs for `keep_seconds` after its last call.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from pathlib import Path

from .call import run_call, task_environment
from .interface import JSON, OnCallsDone, OnCallsEnded, TaskCall, TaskFailed
from .warm import WarmStarters

STOP_GRACE_SECONDS = 5.0
STOP_POLL_SECONDS = 0.05

logger = logging.getLogger(__name__)


class LocalExecutor:
    def __init__(
        self,
        job_dir: Path,
        max_workers: int,
        *,
        warm_start: bool = True,
        planned_commands: Iterable[str] = (),
        keep_seconds: float = 0.0,
        keep_dir: Path | None = None,
        log: logging.Logger = logger,
    ) -> None:
        self.job_dir = job_dir
        self.max_workers = max(1, max_workers)
        self.log = log
        self.starters = WarmStarters(
            enabled=warm_start,
            log_dir=job_dir,
            env=task_environment(),
            on_note=log.info,
            planned_commands=planned_commands,
            keep_seconds=keep_seconds,
            keep_dir=keep_dir,
        )
        self._running: set[int] = set()  # the pids (and process groups) of running calls
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self.on_calls_done: OnCallsDone | None = None
        self.on_calls_ended: OnCallsEnded | None = None

    def workers_for(self, calls: Sequence[TaskCall]) -> int:
        """`meta.parallel_tasks_per_job` narrows the concurrency of a task's calls."""
        limits = [
            int(call.meta["parallel_tasks_per_job"])
            for call in calls
            if isinstance(call.meta.get("parallel_tasks_per_job"), int)
            and call.meta["parallel_tasks_per_job"] > 0
        ]
        return min([self.max_workers, len(calls), *limits])

    def run_calls(self, calls: Sequence[TaskCall]) -> list[JSON | None]:
        if not calls:
            return []
        self.starters.expect(calls)
        with ThreadPoolExecutor(self.workers_for(calls), thread_name_prefix="task") as pool:
            futures = [pool.submit(self._run_one, call) for call in calls]
            done, pending = wait(futures, return_when=FIRST_EXCEPTION)
            failed = [future for future in done if future.exception() is not None]
            if failed:
                for future in pending:
                    future.cancel()
                wait(pending)
                raise self._first_failure(futures)
        return [future.result() for future in futures]

    @staticmethod
    def _first_failure(futures: list[Future[JSON | None]]) -> BaseException:
        """The failure of the earliest call (in call order), for a stable report."""
        for future in futures:
            if not future.cancelled() and future.exception() is not None:
                error = future.exception()
                assert error is not None
                return error
        raise AssertionError("no failed call")

    def _run_one(self, call: TaskCall) -> JSON | None:
        if self._stopped.is_set():
            raise TaskFailed(call, "the job was stopped")
        process_holder: list[int] = []

        def started(pid: int) -> None:
            process_holder.append(pid)
            with self._lock:
                self._running.add(pid)
            if self._stopped.is_set():
                self._kill(pid, signal.SIGKILL)

        try:
            output = run_call(self.job_dir, call, started, self.starters)
        except TaskFailed:
            if self._stopped.is_set():
                raise TaskFailed(call, "the job was stopped") from None
            if self.on_calls_ended is not None:
                self.on_calls_ended([(call, False)])
            raise
        else:
            if self.on_calls_done is not None:
                self.on_calls_done(1)
            if self.on_calls_ended is not None:
                self.on_calls_ended([(call, True)])
            return output
        finally:
            with self._lock:
                for process in process_holder:
                    self._running.discard(process)

    def describe(self) -> str:
        return f"up to {self.max_workers} concurrent task processes"

    def close(self) -> None:
        """The warm starters end (the task processes of a batch end within `run_calls`)."""
        self.starters.close()

    def stop(self) -> None:
        """Stop: no new calls; running task processes (and their children) are terminated."""
        self._stopped.set()
        with self._lock:
            running = set(self._running)
        for pid in running:
            self._kill(pid, signal.SIGTERM)
        # A call leaves `_running` once its thread saw its process end (spawned or warm).
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        while time.monotonic() < deadline:
            with self._lock:
                if not running & self._running:
                    return
            time.sleep(STOP_POLL_SECONDS)
        with self._lock:
            left = running & self._running
        for pid in left:
            self._kill(pid, signal.SIGKILL)

    @staticmethod
    def _kill(pid: int, signum: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signum)
