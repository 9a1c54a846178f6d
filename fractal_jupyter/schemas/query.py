"""Query-string parameters (lenient: query strings are text, "true" and "1" are fine)."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class QueryModel(BaseModel):
    model_config = ConfigDict(extra="ignore")


class HistoryQuery(QueryModel):
    history: bool = True


class ImageQueryParameters(QueryModel):
    use_dataset_filters: bool = False
    page: int = 1
    page_size: int | None = None


class ZarrUrlQuery(QueryModel):
    zarr_url: str


class GroupNamesQuery(QueryModel):
    group_names: bool = False


class TaskListQuery(QueryModel):
    args_schema_parallel: bool = True
    args_schema_non_parallel: bool = True


class WorkflowTaskAddQuery(QueryModel):
    """2.6.4 names the task in the query (`task_id`, required with an object body); 2.26
    names each in the list body, and their position here (`order`)."""

    task_id: int | None = None
    order: int | None = Field(default=None, ge=0)


class TaskCreateQuery(QueryModel):
    """fractal-server 2.7+: who the task group of new tasks is shared with (`POST
    api/v2/task/`, `.../task/collect/pip/`, `.../task/collect/custom/`)."""

    private: bool = False
    user_group_id: int | None = None


class LogQuery(QueryModel):
    log: bool = True


class ShowTmpLogsQuery(QueryModel):
    show_tmp_logs: bool = False


class SubmitQuery(QueryModel):
    workflow_id: int
    dataset_id: int


class StatusQuery(QueryModel):
    dataset_id: int
    workflow_id: int


class DatasetWorkflowTaskQuery(QueryModel):
    dataset_id: int
    workflowtask_id: int


class UnitQuery(DatasetWorkflowTaskQuery):
    unit_status: Literal["submitted", "done", "failed"] | None = None
    page: int = 1
    page_size: int | None = None


class UnitLogQuery(DatasetWorkflowTaskQuery):
    history_run_id: int
    history_unit_id: int


class StatusImagesQuery(DatasetWorkflowTaskQuery):
    include_warnings: bool = False
    page: int = 1
    page_size: int | None = None


class WorkflowDatasetQuery(QueryModel):
    workflow_id: int
    dataset_id: int


class WorkflowTaskIdQuery(QueryModel):
    workflowtask_id: int


class NonProcessedQuery(QueryModel):
    workflow_id: int
    workflowtask_id: int


class ReplaceTaskQuery(QueryModel):
    workflow_task_id: int
    task_id: int
