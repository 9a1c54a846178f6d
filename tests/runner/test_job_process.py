"""The job process's reports: calls of the running task that ended well, units of work."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from fractal_jupyter.runner.files import EventWriter, read_events
from fractal_jupyter.runner.interface import JSON, TaskCall, TaskFailed
from fractal_jupyter.runner.job import (
    CallProgress,
    ReportingExecutor,
    UnitReporter,
    finish_failed,
)
from fractal_jupyter.runner.local import LocalExecutor
from fractal_jupyter.runner.slurm import executor_error_log
from tests.support.jobs import MISBEHAVE


def calls_done_events(job_dir: Path) -> list[tuple[int, int]]:
    return [
        (event["workflow_task_id"], event["calls_done"])
        for event in read_events(job_dir)
        if event["type"] == "calls_done"
    ]


def test_calls_done_is_counted_per_task_and_reported_at_most_every_interval(
    tmp_path: Path,
) -> None:
    progress = CallProgress(EventWriter(tmp_path))
    progress.task_started(7)
    for _ in range(50):  # fifty calls end at once: one report, not fifty fsyncs
        progress.calls_done(1)
    assert calls_done_events(tmp_path) == [(7, 1)]

    progress.REPORT_INTERVAL_SECONDS = 0.0
    progress.task_started(7)  # a compound task announcing its parallel calls: the count goes on
    progress.calls_done(2)
    progress.task_started(8)  # the next task starts from zero
    progress.calls_done(3)
    assert calls_done_events(tmp_path) == [(7, 1), (7, 52), (8, 3)]


def unit_events(job_dir: Path, kind: str) -> list[JSON]:
    return [event for event in read_events(job_dir) if event["type"] == kind]


def misbehave_call(index: int) -> TaskCall:
    """A call of the misbehaving task: it exits with code 3 on image /z/1 only."""
    return TaskCall(
        workflow_task_id=5,
        task_name="exit",
        command=f"{sys.executable} {MISBEHAVE}",
        args={"zarr_url": f"/z/{index}", "mode": "exit", "victim": "/z/1"},
        folder="0_exit",
        prefix=f"0_par_{index:07d}",
        part="parallel",
        zarr_url=f"/z/{index}",
    )


def test_every_call_that_ended_is_reported_also_when_a_sibling_failed(tmp_path: Path) -> None:
    units = UnitReporter(EventWriter(tmp_path), tmp_path)
    local = LocalExecutor(tmp_path, max_workers=4)
    executor = ReportingExecutor(local, units)
    calls = [misbehave_call(index) for index in range(4)]
    try:
        with pytest.raises(TaskFailed):
            executor.run_calls(calls)
    finally:
        local.close()  # its warm starter, which would otherwise live as long as pytest
    [submitted] = unit_events(tmp_path, "units_submitted")
    assert submitted["workflow_task_id"] == 5
    logfiles = [str(tmp_path / "0_exit" / f"0_par_{index:07d}.log") for index in range(4)]
    assert submitted["units"] == [
        {"logfile": logfiles[index], "zarr_urls": [f"/z/{index}"]} for index in range(4)
    ]
    ended = {
        unit["logfile"]: unit["status"]
        for event in unit_events(tmp_path, "units_ended")
        for unit in event["units"]
    }
    assert ended == {
        logfiles[0]: "done",
        logfiles[1]: "failed",
        logfiles[2]: "done",
        logfiles[3]: "done",
    }


def test_executor_error_log_keeps_what_slurm_says_without_its_noise() -> None:
    oom = (
        "slurmstepd: error: Detected 1 oom_kill event in StepId=42.batch. Some of the step "
        "tasks have been OOM Killed.\n"
        "slurmstepd: error: Detected 1 oom_kill event in StepId=42.batch. Some of the step "
        "tasks have been OOM Killed.\n"
    )
    assert executor_error_log(oom) == (
        "Out of memory.\nDetected 1 oom_kill event in StepId=42.batch. Some of the step tasks "
        "have been OOM Killed."
    )
    timeout = (
        "slurmstepd: error: *** JOB 43 ON node1 CANCELLED AT 2026-12-04T10:00:00 DUE TO TIME "
        "LIMIT ***\n\n"
    )
    assert executor_error_log(timeout) == (
        "Time limit reached.\nJOB 43 ON node1 CANCELLED AT 2026-12-04T10:00:00 DUE TO TIME LIMIT"
    )
    cancelled = "slurmstepd: error: *** JOB 44 ON node1 CANCELLED AT 2026-12-04T10:00:00 ***"
    assert executor_error_log(cancelled).splitlines()[0] == "Cancelled."
    assert executor_error_log("\n  \n") == ""
    assert executor_error_log("Traceback: boom") == "Traceback: boom"


def test_a_failure_that_the_executor_explains_is_reported_with_the_job(tmp_path: Path) -> None:
    events = EventWriter(tmp_path)
    finish_failed(events, logging.getLogger("test"), "JOB ERROR", None, "Out of memory.")
    [failed] = unit_events(tmp_path, "job_failed")
    assert failed["executor_error_log"] == "Out of memory."


def test_events_already_applied_are_skipped_without_decoding(tmp_path: Path) -> None:
    events = EventWriter(tmp_path)
    for kind in ("job_started", "task_started", "job_done"):
        events.write(kind)
    lines = (tmp_path / "events.jsonl").read_text().splitlines(keepends=True)
    # A line that could not be decoded is never read again once applied.
    (tmp_path / "events.jsonl").write_text('{"seq": 1, "type": broken\n' + "".join(lines[1:]))
    assert [event["type"] for event in read_events(tmp_path, after=1)] == [
        "task_started",
        "job_done",
    ]
