"""The admin API's own models (`admin/v2/`) and its query parameters."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, NonNegativeInt, PositiveInt, RootModel

from .common import LenientRequestModel, ResponseModel
from .job import JobStatus
from .query import QueryModel
from .user import unique_items


class AdminProjectQuery(QueryModel):
    id: int | None = None
    user_id: int | None = None


class AdminJobQuery(QueryModel):
    """Filters of `GET admin/v2/job/`; timestamps need a time zone (as 2.6.4)."""

    id: int | None = None
    user_id: int | None = None
    project_id: int | None = None
    dataset_id: int | None = None
    workflow_id: int | None = None
    status: JobStatus | None = None
    # Checked for a time zone by the service, with 2.6.4's message.
    start_timestamp_min: datetime | None = None
    start_timestamp_max: datetime | None = None
    end_timestamp_min: datetime | None = None
    end_timestamp_max: datetime | None = None
    log: bool = True


class AdminTaskQuery(QueryModel):
    id: int | None = None
    source: str | None = None
    version: str | None = None
    name: str | None = None
    owner: str | None = None
    kind: Literal["common", "users"] | None = None
    max_number_of_results: PositiveInt = 25


class JobUpdate(LenientRequestModel):
    """`PATCH admin/v2/job/{id}/`: only `failed` is accepted (checked by the service)."""

    status: JobStatus


class TaskMinimal(ResponseModel):
    id: int
    name: str
    type: str
    command_non_parallel: str | None
    command_parallel: str | None
    source: str
    owner: str | None
    version: str | None


class ProjectUser(ResponseModel):
    id: int
    email: str


class TaskRelationship(ResponseModel):
    workflow_id: int
    workflow_name: str
    project_id: int
    project_name: str
    project_users: list[ProjectUser] = Field(default_factory=list)


class TaskInfo(ResponseModel):
    task: TaskMinimal
    relationships: list[TaskRelationship]


class TaskIds(RootModel[list[NonNegativeInt]]):
    """`POST admin/v2/task/make-core/` and `make-not-core/` (fractal-server 2.26): a
    non-empty list of task ids, each once."""

    root: Annotated[
        list[NonNegativeInt],
        Field(min_length=1),
        AfterValidator(lambda value: unique_items(value, "task_ids")),
    ]
