"""The local executor: task processes on this machine, a bounded number at a time."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from pathlib import Path

from .call import run_call
from .interface import JSON, OnCallsDone, OnCallsEnded, TaskCall, TaskFailed

STOP_GRACE_SECONDS = 5.0


class LocalExecutor:
    def __init__(self, job_dir: Path, max_workers: int) -> None:
        self.job_dir = job_dir
        self.max_workers = max(1, max_workers)
        self._running: set[subprocess.Popen[bytes]] = set()
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
        process_holder: list[subprocess.Popen[bytes]] = []

        def started(process: subprocess.Popen[bytes]) -> None:
            process_holder.append(process)
            with self._lock:
                self._running.add(process)
            if self._stopped.is_set():
                self._kill(process, signal.SIGKILL)

        try:
            output = run_call(self.job_dir, call, started)
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

    def stop(self) -> None:
        """Stop: no new calls; running task processes (and their children) are terminated."""
        self._stopped.set()
        with self._lock:
            running = list(self._running)
        for process in running:
            self._kill(process, signal.SIGTERM)
        for process in running:
            try:
                process.wait(timeout=STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                self._kill(process, signal.SIGKILL)

    @staticmethod
    def _kill(process: subprocess.Popen[bytes], signum: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signum)
