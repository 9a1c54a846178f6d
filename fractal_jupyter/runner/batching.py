"""How many calls of a parallel task go into one SLURM job: fractal-server 2.6.4's heuristic.

A SLURM job runs `tasks_per_job` calls, `parallel_tasks_per_job` of them at a time. The
heuristic tries, in order: what the task's meta asks for (checked against the limits); as many
calls at once as fit in the *target* CPUs and memory of a job, if that gives at most the
*target* number of jobs; the same with the *max* CPUs and memory and the *max* number of jobs;
and last, the max-sized jobs with the calls queued inside them (so the number of jobs stays at
`max_num_jobs`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


class BatchingError(ValueError):
    """The task's resources or meta cannot be met within the batching limits."""


@dataclass(frozen=True)
class BatchingLimits:
    target_cpus_per_job: int = 8
    max_cpus_per_job: int = 16
    target_mem_per_job: int = 32_000  # MB
    max_mem_per_job: int = 62_000  # MB
    target_num_jobs: int = 100
    max_num_jobs: int = 200

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> BatchingLimits:
        unknown = set(values) - set(cls.__dataclass_fields__)
        if unknown:
            raise BatchingError(f"unknown batching setting(s) {sorted(unknown)}")
        parsed = {
            key: parse_mem(value) if key.endswith("_mem_per_job") else int(value)
            for key, value in values.items()
        }
        limits = cls(**parsed)
        for name in cls.__dataclass_fields__:
            if getattr(limits, name) < 1:
                raise BatchingError(f"batching setting {name} must be at least 1")
        return limits


_MEM = re.compile(r"^\s*(\d+)\s*([MGT]?)\s*$")


def parse_mem(value: int | str) -> int:
    """Memory in MB: an int or digits (MB), `<n>M`, `<n>G` (n*1000) or `<n>T` (n*10^6)."""
    if isinstance(value, bool):
        raise BatchingError(f"invalid memory value {value!r}")
    if isinstance(value, int):
        return value
    match = _MEM.match(str(value))
    if match is None:
        raise BatchingError(
            f"invalid memory value {value!r}: use MB as a number, or <n>M, <n>G or <n>T"
        )
    number, unit = int(match.group(1)), match.group(2)
    return number * {"": 1, "M": 1, "G": 1000, "T": 1_000_000}[unit]


def heuristics(
    units: int,
    limits: BatchingLimits,
    cpus_per_task: int,
    mem_per_task: int,
    tasks_per_job: int | None = None,
    parallel_tasks_per_job: int | None = None,
) -> tuple[int, int]:
    """(tasks_per_job, parallel_tasks_per_job) for `units` calls of one task."""
    if (tasks_per_job is None) != (parallel_tasks_per_job is None):
        raise BatchingError(
            "tasks_per_job and parallel_tasks_per_job must be given together "
            f"(got {tasks_per_job} and {parallel_tasks_per_job})"
        )
    if cpus_per_task > limits.max_cpus_per_job:
        raise BatchingError(
            f"cpus_per_task={cpus_per_task} is more than max_cpus_per_job={limits.max_cpus_per_job}"
        )
    if mem_per_task > limits.max_mem_per_job:
        raise BatchingError(
            f"mem={mem_per_task} MB per task is more than max_mem_per_job="
            f"{limits.max_mem_per_job} MB"
        )
    if tasks_per_job is not None and parallel_tasks_per_job is not None:
        if tasks_per_job < 1 or parallel_tasks_per_job < 1:
            raise BatchingError("tasks_per_job and parallel_tasks_per_job must be at least 1")
        parallel = min(parallel_tasks_per_job, tasks_per_job)
        if parallel * cpus_per_task > limits.max_cpus_per_job:
            raise BatchingError(
                f"{parallel} parallel tasks of {cpus_per_task} CPUs exceed max_cpus_per_job="
                f"{limits.max_cpus_per_job}"
            )
        if parallel * mem_per_task > limits.max_mem_per_job:
            raise BatchingError(
                f"{parallel} parallel tasks of {mem_per_task} MB exceed max_mem_per_job="
                f"{limits.max_mem_per_job} MB"
            )
        if math.ceil(units / tasks_per_job) > limits.max_num_jobs:
            raise BatchingError(
                f"{units} calls with tasks_per_job={tasks_per_job} make "
                f"{math.ceil(units / tasks_per_job)} SLURM jobs, more than max_num_jobs="
                f"{limits.max_num_jobs}"
            )
        return tasks_per_job, parallel

    def fit(cpus: int, mem: int) -> int:
        if cpus_per_task > cpus or mem_per_task > mem:
            return 1
        return max(1, min(cpus // cpus_per_task, mem // mem_per_task))

    parallel = fit(limits.target_cpus_per_job, limits.target_mem_per_job)
    if math.ceil(units / parallel) <= limits.target_num_jobs:
        return parallel, parallel
    parallel = fit(limits.max_cpus_per_job, limits.max_mem_per_job)
    if math.ceil(units / parallel) <= limits.max_num_jobs:
        return parallel, parallel
    return math.ceil(units / limits.max_num_jobs), parallel


def split(items: Sequence[T], size: int) -> list[list[T]]:
    """Consecutive chunks of `size` (the last may be shorter)."""
    return [list(items[start : start + size]) for start in range(0, len(items), size)]
