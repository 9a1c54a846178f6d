"""The job process's progress reports: how many calls of the running task ended well."""

from __future__ import annotations

from pathlib import Path

from fractal_jupyter.runner.files import EventWriter, read_events
from fractal_jupyter.runner.job import CallProgress


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
