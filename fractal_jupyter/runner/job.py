"""The detached job process: `python -m fractal_jupyter.runner.job <job folder>`.

It runs in its own session, so it outlives a restart of the Jupyter server that started it.
It reads `job.json`, drives the engine with its backend's executor, and reports everything as
events; it never touches the database.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from .backends import open_executor
from .call import call_paths
from .engine import JobFilters, run_workflow
from .files import PROCESS_LOG, STOP_REQUEST_FILE, WORKFLOW_LOG, EventWriter, JobSpec
from .heartbeat import Heartbeat
from .interface import (
    JSON,
    JobExecutor,
    JobFailed,
    TaskCall,
    TaskFailed,
    TaskResult,
    WorkflowTaskSpec,
)

LOG_FORMAT = "%(asctime)s - %(levelname)s - %(message)s"


def job_logger(job_dir: Path, job_id: int) -> logging.Logger:
    logger = logging.getLogger(f"fractal_jupyter.job{job_id}")
    logger.setLevel(logging.INFO)
    handler = logging.FileHandler(job_dir / WORKFLOW_LOG)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logger.addHandler(handler)
    logger.propagate = False
    return logger


def task_failure_message(error: TaskFailed, spec: WorkflowTaskSpec) -> str:
    call = error.call
    where = f" on image {call.zarr_url}" if call.zarr_url else ""
    message = (
        f"TASK ERROR: Task name: {spec.task_name}, position in Workflow: {spec.order}\n"
        f"The call {call.folder}/{call.prefix}{where} failed: {error.reason}\n"
        f"Its log is {call.folder}/{call.prefix}.log"
    )
    if error.log_tail:
        message += f"; it ends with:\n{error.log_tail.rstrip()}"
    return message


class CallProgress:
    """Reports how many calls of the running task ended well, at most every few tenths of a
    second (every event is fsync'ed; a task may have thousands of calls)."""

    REPORT_INTERVAL_SECONDS = 0.5

    def __init__(self, events: EventWriter) -> None:
        self.events = events
        self._lock = threading.Lock()
        self._task_id: int | None = None
        self._done = 0
        self._reported_at = 0.0

    def task_started(self, task_id: int) -> None:
        with self._lock:
            if task_id != self._task_id:  # a compound task reports its calls twice
                self._task_id, self._done = task_id, 0

    def calls_done(self, count: int) -> None:
        with self._lock:
            self._done += count
            now = time.monotonic()
            if now - self._reported_at < self.REPORT_INTERVAL_SECONDS:
                return
            self._reported_at = now
            self.events.write("calls_done", workflow_task_id=self._task_id, calls_done=self._done)


def zarr_urls(call: TaskCall) -> list[str]:
    """The images a call works on: a parallel call's one, a non-parallel call's list."""
    if call.zarr_url is not None:
        return [call.zarr_url]
    return list(call.args.get("zarr_urls", []))


class UnitReporter:
    """Reports the units of work (task calls) of the job for the run history.

    `units_submitted` names each call of a batch (its log file, which identifies it, and its
    zarr_urls) before the batch runs; `units_ended` gives the status of the calls that ended,
    gathered and written at most every few tenths of a second and whenever a batch is over
    (also when it failed), so that a task of 10,000 calls makes a few events, not 10,000.
    """

    REPORT_INTERVAL_SECONDS = 0.5

    def __init__(self, events: EventWriter, job_dir: Path) -> None:
        self.events = events
        self.job_dir = job_dir
        self._lock = threading.Lock()
        self._ended: list[JSON] = []
        self._task_id: int | None = None
        self._reported_at = 0.0

    def logfile(self, call: TaskCall) -> str:
        return str(call_paths(self.job_dir, call)[2])

    def submitted(self, calls: Sequence[TaskCall]) -> None:
        if not calls:
            return
        self.flush()
        with self._lock:
            self._task_id = calls[0].workflow_task_id
        units = [{"logfile": self.logfile(call), "zarr_urls": zarr_urls(call)} for call in calls]
        self.events.write(
            "units_submitted", workflow_task_id=calls[0].workflow_task_id, units=units
        )

    def ended(self, outcomes: Sequence[tuple[TaskCall, bool]]) -> None:
        with self._lock:
            self._ended += [
                {
                    "logfile": self.logfile(call),
                    "status": "done" if ok else "failed",
                    "zarr_urls": zarr_urls(call),
                }
                for call, ok in outcomes
            ]
            if time.monotonic() - self._reported_at < self.REPORT_INTERVAL_SECONDS:
                return
            self._write_ended()

    def flush(self) -> None:
        with self._lock:
            self._write_ended()

    def _write_ended(self) -> None:
        self._reported_at = time.monotonic()
        if self._ended:
            units, self._ended = self._ended, []
            self.events.write("units_ended", workflow_task_id=self._task_id, units=units)


class ReportingExecutor:
    """The job's executor, with each batch of calls reported to the run history."""

    def __init__(self, executor: JobExecutor, units: UnitReporter) -> None:
        self.executor = executor
        self.units = units
        executor.on_calls_ended = units.ended

    def run_calls(self, calls: Sequence[TaskCall]) -> list[JSON | None]:
        self.units.submitted(calls)
        try:
            return self.executor.run_calls(calls)
        finally:
            self.units.flush()


def main(job_dir: Path) -> int:
    spec = JobSpec.read(job_dir)
    events = EventWriter(job_dir)
    log = job_logger(job_dir, spec.job_id)

    def stop_asked_in_folder() -> None:
        log.warning("Stop requested through the job folder (%s)", STOP_REQUEST_FILE)
        os.kill(os.getpid(), signal.SIGTERM)

    # A stop asked through the job folder (by a server on another host) is a SIGTERM; the
    # first look for one comes a heartbeat later, when `run` handles SIGTERM.
    with Heartbeat(job_dir, on_stop=stop_asked_in_folder):
        try:
            executor = open_executor(spec, job_dir, log)
        except Exception as error:
            message = (
                f"JOB ERROR in Fractal job {spec.job_id}:\nThe {spec.backend} backend: {error}"
            )
            return finish_failed(events, log, message, None)
        try:
            return run(spec, job_dir, events, log, executor)
        finally:
            executor.close()


def run(
    spec: JobSpec,
    job_dir: Path,
    events: EventWriter,
    log: logging.Logger,
    executor: JobExecutor,
) -> int:
    current: list[WorkflowTaskSpec] = []
    stopped: list[int] = []

    def on_stop(signum: int, frame: FrameType | None) -> None:
        if stopped:
            return  # the second signal of one stop (the server's, then the heartbeat's)
        stopped.append(signum)
        log.warning("Stop requested: terminating the running task processes")
        executor.stop()

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)

    progress = CallProgress(events)
    executor.on_calls_done = progress.calls_done

    def on_task_start(task: WorkflowTaskSpec, calls: int) -> None:
        current.append(task)
        progress.task_started(task.id)
        events.write("task_started", workflow_task_id=task.id, calls=calls, **task.run_dumps)

    def on_task_done(result: TaskResult) -> None:
        events.write(
            "task_done",
            workflow_task_id=result.workflow_task_id,
            images_upserted=result.images_upserted,
            images_removed=result.images_removed,
            filters=result.filters,
            history_item=result.history_item,
        )

    events.write("job_started", pid=os.getpid())
    log.info(
        "Start of job %s: %s task(s), %s image(s) in the dataset, %s backend, %s",
        spec.job_id,
        len(spec.tasks),
        len(spec.images),
        spec.backend,
        executor.describe(),
    )
    message: str | None = None
    executor_error = ""
    try:
        run_workflow(
            spec.tasks,
            spec.images,
            spec.filters,
            spec.zarr_dir,
            ReportingExecutor(executor, UnitReporter(events, job_dir)),
            on_task_start=on_task_start,
            on_task_done=on_task_done,
            log=log,
            job_filters=JobFilters(
                attributes=spec.attribute_filters or {},
                types=spec.type_filters or {},
                first_task_zarr_urls=None
                if spec.first_task_zarr_urls is None
                else frozenset(spec.first_task_zarr_urls),
            ),
        )
    except TaskFailed as error:
        executor_error = error.executor_error
        if stopped:
            message = stop_message(spec, job_dir, stopped[0])
        elif current:
            message = task_failure_message(error, current[-1])
        else:
            message = f"JOB ERROR in Fractal job {spec.job_id}:\n{error.reason}"
    except JobFailed as error:
        message = f"JOB ERROR in Fractal job {spec.job_id}:\n{error}"
    except Exception:
        trace = traceback.format_exc()
        message = f"UNKNOWN ERROR in Fractal job {spec.job_id}\nTRACEBACK:\n{trace}"
    # Whoever reads the final event may take the job for over: nothing of it may still run.
    executor.close()
    if message is not None:
        return finish_failed(events, log, message, current[-1] if current else None, executor_error)
    if stopped:
        return finish_failed(events, log, stop_message(spec, job_dir, stopped[0]), None)
    log.info("End of job %s: done", spec.job_id)
    events.write("job_done")
    return 0


def stop_message(spec: JobSpec, job_dir: Path, signum: int) -> str:
    """A stop of the user comes with a request in the job folder (services/job.py); a signal
    without one came from elsewhere: at its end, SLURM sends SIGTERM to what ran in an
    allocation (batchspawner's servers and their job processes)."""
    if (job_dir / STOP_REQUEST_FILE).exists():
        return f"JOB ERROR in Fractal job {spec.job_id}:\nThe job was stopped by the user."
    name = signal.Signals(signum).name
    return (
        f"JOB ERROR in Fractal job {spec.job_id}:\nThe job process got {name} "
        "without a stop of its user: the end of the SLURM allocation or of the machine it ran "
        "in, or an administrator, ended it."
    )


def finish_failed(
    events: EventWriter,
    log: logging.Logger,
    message: str,
    task: WorkflowTaskSpec | None,
    executor_error: str = "",
) -> int:
    log.error(message)
    if task is not None:
        events.write(
            "task_failed",
            workflow_task_id=task.id,
            history_item={"workflowtask": task.dump, "status": "failed", "parallelization": {}},
        )
    if executor_error:
        events.write("job_failed", message=message, executor_error_log=executor_error)
    else:
        events.write("job_failed", message=message)
    return 0


if __name__ == "__main__":
    folder = Path(sys.argv[1])
    with (folder / PROCESS_LOG).open("a") as process_log:
        sys.stderr = process_log
        sys.exit(main(folder))
