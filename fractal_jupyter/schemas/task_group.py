"""Task groups and their activities (fractal-server 2.26.0's shapes: `TaskGroupRead`,
`TaskGroupReadSlim`, `TaskGroupReadSuperuser`, `TaskGroupActivityRead`, `TaskGroupUpdate`, and
the admin listings' `PaginationResponse[...]`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii
from typing import Literal

from pydantic import AwareDatetime, Field

from .common import RenderedResponse, RequestModel, ResponseModel, Timestamp
from .query import QueryModel
from .task import TaskRead

TaskGroupOrigin = Literal["pypi", "wheel-file", "pixi", "other"]
ActivityStatus = Literal["pending", "ongoing", "failed", "OK"]
ActivityAction = Literal["collect", "deactivate", "reactivate", "delete", "reset"]


class TaskReadSlim(ResponseModel):
    id: int
    name: str
    version: str
    is_core: bool = False
    category: str | None
    modality: str | None
    authors: str | None
    tags: list[str]
    input_types: dict[str, bool]
    docs_info: str | None
    docs_link: str | None


class _TaskGroupFields(ResponseModel):
    id: int
    user_email: str
    user_group_id: int | None
    origin: TaskGroupOrigin
    pkg_name: str
    version: str
    python_version: str | None
    pixi_version: str | None = None
    path: str | None
    venv_path: str | None
    archive_path: str | None
    pip_extras: str | None
    pinned_package_versions_pre: dict[str, str] = Field(default_factory=dict)
    pinned_package_versions_post: dict[str, str] = Field(default_factory=dict)
    in_use: bool
    active: bool
    timestamp_created: Timestamp
    timestamp_last_used: Timestamp


class TaskGroupReadSlim(_TaskGroupFields):
    task_list: list[TaskReadSlim]


def _text(value: str | None) -> str:
    return "null" if value is None else encode_basestring_ascii(value)


def render_slim_task(
    task_id: int,
    name: str,
    version: str,
    is_core: bool,
    category: str | None,
    modality: str | None,
    authors: str | None,
    tags_json: str,
    input_types_json: str,
    docs_info: str | None,
    docs_link: str | None,
) -> str:
    """A `TaskReadSlim` as JSON, its JSON columns (`tags`, `input_types`) as stored."""
    return (
        f'{{"id":{task_id},"name":{encode_basestring_ascii(name)},'
        f'"version":{encode_basestring_ascii(version)},'
        f'"is_core":{"true" if is_core else "false"},'
        f'"category":{_text(category)},"modality":{_text(modality)},'
        f'"authors":{_text(authors)},"tags":{tags_json},"input_types":{input_types_json},'
        f'"docs_info":{_text(docs_info)},"docs_link":{_text(docs_link)}}}'
    )


@dataclass(frozen=True)
class RenderedTaskGroupList(RenderedResponse):
    """`list[tuple[str, list[TaskGroupReadSlim]]]`, rendered from the rows: the listing of
    every task of every group is the hot path (thousands of tasks), and models would cost
    more than the query. `groups` are (package name, [(group fields, rendered tasks)]), in
    order (see `render_slim_task`)."""

    groups: Sequence[tuple[str, Sequence[tuple[dict[str, object], Sequence[str]]]]]

    def to_json(self) -> bytes:
        packages = []
        for pkg_name, members in self.groups:
            rendered = []
            for fields, tasks in members:
                head = json.dumps(fields, default=_timestamp)
                task_list = ",".join(tasks)
                rendered.append(f'{head[:-1]},"task_list":[{task_list}]}}')
            packages.append(f"[{_text(pkg_name)},[{','.join(rendered)}]]")
        return f"[{','.join(packages)}]".encode()


def _timestamp(value: object) -> str:
    isoformat = getattr(value, "isoformat", None)
    if isoformat is None:
        raise TypeError(f"{type(value).__name__} is not JSON serializable")
    return str(isoformat())


class TaskGroupRead(_TaskGroupFields):
    task_list: list[TaskRead]


class TaskGroupReadSuperuser(TaskGroupRead):
    """`user_id` is null only for a group migrated from owner-less tasks of a database that
    had no administrator yet (fractal-server has no such groups)."""

    user_id: int | None
    resource_id: int | None = None


class TaskGroupUpdate(RequestModel):
    """`PATCH .../task-group/{id}/`: share the group with a user group, or with none."""

    user_group_id: int | None = None


class TaskGroupActivityRead(ResponseModel):
    id: int
    user_id: int | None
    taskgroupv2_id: int | None
    timestamp_started: Timestamp
    timestamp_ended: Timestamp | None
    pkg_name: str
    version: str
    status: ActivityStatus
    action: ActivityAction
    log: str | None


class TaskGroupListQuery(QueryModel):
    only_active: bool = False
    only_owner: bool = False


class ActivityListQuery(QueryModel):
    task_group_activity_id: int | None = None
    taskgroupv2_id: int | None = None
    pkg_name: str | None = None
    status: ActivityStatus | None = None
    action: ActivityAction | None = None
    timestamp_started_min: AwareDatetime | None = None


class AdminActivityListQuery(ActivityListQuery):
    user_id: int | None = None
    page: int = 1
    page_size: int | None = None


class AdminTaskGroupListQuery(QueryModel):
    task_group_id: int | None = None
    user_id: int | None = None
    user_group_id: int | None = None
    private: bool | None = None
    active: bool | None = None
    pkg_name: str | None = None
    origin: TaskGroupOrigin | None = None
    timestamp_last_used_min: AwareDatetime | None = None
    timestamp_last_used_max: AwareDatetime | None = None
    resource_id: int | None = None
    in_use: bool | None = None
    page: int = 1
    page_size: int | None = None


class TaskGroupPage(ResponseModel):
    """`PaginationResponse[TaskGroupReadSuperuser]`."""

    current_page: int
    page_size: int
    total_count: int
    items: list[TaskGroupReadSuperuser]


class TaskGroupActivityPage(ResponseModel):
    """`PaginationResponse[TaskGroupActivityRead]`."""

    current_page: int
    page_size: int
    total_count: int
    items: list[TaskGroupActivityRead]
