from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, Field, NonNegativeInt, field_validator, model_validator

from .common import (
    Description,
    Filters,
    JsonObject,
    LenientRequestModel,
    NonEmptyStr,
    RequestModel,
    ResponseModel,
    Timestamp,
    TypeDict,
    check_dict_keys,
    refuse_null,
)
from .project import ProjectRead
from .task import MetaDict, TaskRead

# The runner passes these to every task itself; a workflow may not set them.
RESERVED_ARGUMENTS = frozenset({"zarr_dir", "zarr_url", "zarr_urls", "init_args"})


def _check_args(args: dict[str, Any]) -> dict[str, Any]:
    args = check_dict_keys(args)
    reserved = sorted(RESERVED_ARGUMENTS.intersection(args))
    if reserved:
        raise ValueError(f"`args` contains the following forbidden keys: {reserved}")
    return args


ArgsDict = Annotated[JsonObject, AfterValidator(_check_args)]


class WorkflowTaskCreate(RequestModel):
    meta_non_parallel: MetaDict | None = None
    meta_parallel: MetaDict | None = None
    args_non_parallel: ArgsDict | None = None
    args_parallel: ArgsDict | None = None
    order: NonNegativeInt | None = None
    input_filters: Filters = Field(default_factory=Filters)


class WorkflowTaskCreateItem(RequestModel):
    """One task of fractal-server 2.26's list body of `POST .../wftask/` (position: `order`
    in the query); `type_filters` are the input filters' types."""

    task_id: int
    meta_non_parallel: MetaDict | None = None
    meta_parallel: MetaDict | None = None
    args_non_parallel: ArgsDict | None = None
    args_parallel: ArgsDict | None = None
    type_filters: TypeDict = Field(default_factory=dict)

    def as_create(self, order: int | None) -> WorkflowTaskCreate:
        return WorkflowTaskCreate(
            **self.model_dump(exclude={"task_id", "type_filters"}),
            order=order,
            input_filters=Filters(types=self.type_filters),
        )


class WorkflowTaskUpdate(LenientRequestModel):
    meta_non_parallel: MetaDict | None = None
    meta_parallel: MetaDict | None = None
    args_non_parallel: ArgsDict | None = None
    args_parallel: ArgsDict | None = None
    input_filters: Filters | None = None

    _not_null = field_validator("input_filters", mode="before")(refuse_null)


class WorkflowTaskRead(ResponseModel):
    id: int
    workflow_id: int
    order: int | None
    meta_non_parallel: dict[str, Any] | None
    meta_parallel: dict[str, Any] | None
    args_non_parallel: dict[str, Any] | None
    args_parallel: dict[str, Any] | None
    input_filters: Filters
    task_type: str
    task_id: int
    task: TaskRead


class WorkflowCreate(RequestModel):
    name: NonEmptyStr
    description: Description | None = None  # fractal-server 2.26


def _check_reordering(ids: list[int]) -> list[int]:
    if any(i < 0 for i in ids):
        raise ValueError("Negative `id` in `reordered_workflowtask_ids`")
    if len(ids) != len(set(ids)):
        raise ValueError("`reordered_workflowtask_ids` has repetitions")
    return ids


class WorkflowUpdate(LenientRequestModel):
    name: NonEmptyStr | None = None
    reordered_workflowtask_ids: Annotated[list[int], AfterValidator(_check_reordering)] | None = (
        None
    )

    # 2.26: null clears the description (left out: kept).
    description: Description | None = None

    _not_null = field_validator("name", "reordered_workflowtask_ids", mode="before")(refuse_null)


class WorkflowRead(ResponseModel):
    id: int
    name: str
    description: str | None = None  # fractal-server 2.26; 2.6.4 has none
    project_id: int
    task_list: list[WorkflowTaskRead]
    project: ProjectRead
    timestamp_created: Timestamp


class WorkflowTaskReadWithWarning(WorkflowTaskRead):
    """An imported task (fractal-server 2.20+): `warning` says when the task found is not
    the version the import named."""

    warning: str | None = None


class WorkflowReadWithWarnings(WorkflowRead):
    task_list: list[WorkflowTaskReadWithWarning]  # type: ignore[assignment]


class TaskImport(LenientRequestModel):
    """A task of an imported workflow: by `source` (fractal-server 2.6.4's export), or by
    package, version and name (2.7+'s portable export; `version` may be left out), or both
    (our export: the source wins where it is known)."""

    source: NonEmptyStr | None = None
    pkg_name: NonEmptyStr | None = None
    version: NonEmptyStr | None = None
    name: NonEmptyStr | None = None

    @model_validator(mode="after")
    def _source_or_package(self) -> TaskImport:
        if self.source is None and (self.pkg_name is None or self.name is None):
            raise ValueError(
                "a task is named by `source`, or by `pkg_name` and `name` (and `version`)"
            )
        return self


class WorkflowTaskImport(LenientRequestModel):
    meta_non_parallel: MetaDict | None = None
    meta_parallel: MetaDict | None = None
    args_non_parallel: ArgsDict | None = None
    args_parallel: ArgsDict | None = None
    input_filters: Filters | None = None
    task: TaskImport


class WorkflowImport(LenientRequestModel):
    name: NonEmptyStr
    description: Description | None = None  # 2.26 (2.6.4's exports have none)
    task_list: list[WorkflowTaskImport]


class TaskExport(ResponseModel):
    """2.6.4's `source`, and 2.7+'s portable `{pkg_name, version, name}` (package and
    version are null for a task without a version: `services/task_package.py`)."""

    source: str
    pkg_name: str | None
    version: str | None
    name: str


class WorkflowTaskExport(ResponseModel):
    meta_non_parallel: dict[str, Any] | None = None
    meta_parallel: dict[str, Any] | None = None
    args_non_parallel: dict[str, Any] | None = None
    args_parallel: dict[str, Any] | None = None
    input_filters: Filters = Field(default_factory=Filters)
    task: TaskExport


class WorkflowExport(ResponseModel):
    name: str
    description: str | None = None  # 2.26
    task_list: list[WorkflowTaskExport]


class WorkflowTaskReplace(LenientRequestModel):
    """`POST .../wftask/replace-task/` (2.26): arguments for the new task; a side left out
    keeps the old entry's arguments that the new task's schema still accepts."""

    args_non_parallel: ArgsDict | None = None
    args_parallel: ArgsDict | None = None


class DroppedArgument(ResponseModel):
    """An argument of the replaced entry that the new task's schema refuses."""

    loc: list[str]
    value: Any
    msg: str


class WorkflowTaskReplaced(WorkflowTaskRead):
    """The new entry (2.26's `WorkflowTaskRead`), plus the old arguments left out."""

    dropped_arguments: list[DroppedArgument] = Field(default_factory=list)


class TaskVersionRead(ResponseModel):
    task_id: int
    version: str
