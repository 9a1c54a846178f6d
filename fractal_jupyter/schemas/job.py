from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, NonNegativeInt, PlainSerializer, StrictStr, model_validator

from .common import (
    NonEmptyStr,
    RequestModel,
    ResponseModel,
    Timestamp,
    TypeDict,
    check_filter_counts,
)
from .filters import AttributeFilters

JobStatus = Literal["submitted", "done", "failed"]
OptionalTimestamp = Annotated[
    datetime | None,
    PlainSerializer(lambda value: value.isoformat() if value else None, return_type=str | None),
]


class JobCreate(RequestModel):
    first_task_index: NonNegativeInt | None = None
    last_task_index: NonNegativeInt | None = None
    slurm_account: StrictStr | None = None
    worker_init: NonEmptyStr | None = None
    # fractal-server 2.11+: which images the job starts from (the status key included).
    attribute_filters: AttributeFilters = Field(default_factory=dict)
    type_filters: TypeDict = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_order(self) -> JobCreate:
        first, last = self.first_task_index, self.last_task_index
        if first is not None and last is not None and first > last:
            raise ValueError(
                f"first_task_index={first} cannot be larger than last_task_index={last}"
            )
        # They reach the image query of the first task (the status key in SQL).
        check_filter_counts(attribute=self.attribute_filters, type=self.type_filters)
        return self


class JobRead(ResponseModel):
    id: int
    project_id: int | None
    project_dump: dict[str, Any]
    user_email: str
    slurm_account: str | None
    workflow_id: int | None
    workflow_dump: dict[str, Any]
    dataset_id: int | None
    dataset_dump: dict[str, Any]
    start_timestamp: Timestamp
    end_timestamp: OptionalTimestamp
    status: JobStatus
    log: str | None
    working_dir: str | None
    working_dir_user: str | None
    first_task_index: int
    last_task_index: int
    worker_init: str | None


class StatusRead(ResponseModel):
    status: dict[str, Literal["submitted", "done", "failed"]]


class TaskProgressRead(ResponseModel):
    """One workflow task of a job: where it is, and its calls (parallel tasks: one per image)."""

    workflow_task_id: int
    order: int | None
    task_name: str
    task_type: str | None = None  # the task's type (None: the workflow task is gone)
    status: Literal["pending", "submitted", "done", "failed"]
    calls_total: int | None  # known once the task has started
    calls_done: int
    # The task's input images in this job by the status of their latest call (extension).
    images_submitted: int = 0
    images_done: int = 0
    images_failed: int = 0


class JobProgressRead(ResponseModel):
    """A job's progress task by task (not in fractal-server 2.6.4; for progress views)."""

    job_id: int
    status: JobStatus
    tasks: list[TaskProgressRead]
