"""What the engine, the executors and the job process share.

The engine decides *what* runs (task calls built from images, filters and task types) and
merges what the calls return; an executor decides *where and how* calls run. Neither knows
about HTTP or the database: the job process feeds the engine from a job spec file and reports
its results as events.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

JSON = dict[str, Any]


@dataclass(frozen=True)
class WorkflowTaskSpec:
    """One workflow task of the job, with the task fields the engine needs."""

    id: int  # the workflow task's id
    order: int  # its position in the whole workflow (names the task folder)
    task_id: int
    task_name: str
    task_type: str  # non_parallel, parallel, compound, converter_non_parallel, converter_compound
    command_non_parallel: str | None
    command_parallel: str | None
    args_non_parallel: JSON | None
    args_parallel: JSON | None
    meta_non_parallel: JSON | None
    meta_parallel: JSON | None
    input_filters: JSON  # {"attributes": {...}, "types": {...}}
    input_types: dict[str, bool]
    output_types: dict[str, bool]
    dump: JSON  # fractal-server's WorkflowTaskDumpV2, for history items
    # The workflow task (arguments included) and its task as submitted, frozen for the run
    # history: {"workflowtask": {...}, "task": {...}} (absent in job specs of older versions).
    run_dumps: JSON = field(default_factory=dict)


@dataclass(frozen=True)
class TaskCall:
    """One process to run: `<command> --args-json <folder>/<prefix>.args.json --out-json ...`."""

    workflow_task_id: int
    task_name: str
    command: str
    args: JSON
    folder: str  # relative to the job folder: "<order>_<task slug>"
    prefix: str  # "<order>" or "<order>_par_<7-digit index>"
    part: str  # "non_parallel" or "parallel": which meta applies
    meta: JSON = field(default_factory=dict)
    zarr_url: str | None = None  # the image a parallel call works on, for error messages


class TaskFailed(Exception):
    """A task process failed (non-zero exit, killed, or unreadable output)."""

    def __init__(
        self, call: TaskCall, reason: str, log_tail: str = "", executor_error: str = ""
    ) -> None:
        super().__init__(reason)
        self.call = call
        self.reason = reason
        self.log_tail = log_tail
        # What the executor itself says (SLURM's stderr of a job it killed), without noise.
        self.executor_error = executor_error


class JobFailed(Exception):
    """The job cannot go on for a reason that is not one task's failure (bad output, rules)."""


class Executor(Protocol):
    def run_calls(self, calls: Sequence[TaskCall]) -> list[JSON | None]:
        """Run the calls (possibly concurrently); their parsed outputs in the same order.

        A call whose out-json is missing, empty or `{}` gives None. The first failure raises
        `TaskFailed` once the calls already running have ended (or been cancelled).
        """
        ...


class JobExecutor(Executor, Protocol):
    """What the job process needs of an executor, whatever the backend (`runner.backends`
    builds it)."""

    on_calls_done: OnCallsDone | None
    on_calls_ended: OnCallsEnded | None

    def describe(self) -> str:
        """Where and how the calls run, for the first line of the job's log."""
        ...

    def stop(self) -> None:
        """Stop the running calls (called from a signal handler): `run_calls` then fails."""
        ...

    def close(self) -> None:
        """At the end of the job: nothing it started may still run afterwards."""
        ...


@dataclass(frozen=True)
class TaskResult:
    """What one workflow task changed, as deltas on the dataset."""

    workflow_task_id: int
    images_upserted: list[JSON]  # full images (zarr_url, origin, attributes, types)
    images_removed: list[str]  # zarr_urls
    filters: JSON  # the dataset filters after this task (full, not a delta)
    history_item: JSON  # {"workflowtask": dump, "status": "done", "parallelization": {}}


OnTaskStart = Callable[[WorkflowTaskSpec, int], None]  # (task, number of calls)
OnCallsDone = Callable[[int], None]  # (how many more calls ended well)
# Calls that ended, each with True when it ended well: every call that ran to its end is
# reported, also when a sibling failed; calls cancelled or stopped before their end are not.
OnCallsEnded = Callable[[Sequence[tuple[TaskCall, bool]]], None]
OnTaskDone = Callable[[TaskResult], None]
