"""Run history and per-image status (fractal-server 2.14+ shapes, as in 2.26.0)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

from .common import RenderedResponse, RequestModel, ResponseModel
from .filters import IMAGE_STATUS_KEY
from .images import render_attribute_values
from .job import JobRead

UnitStatus = Literal["submitted", "done", "failed"]


class ImageLogsRequest(RequestModel):
    workflowtask_id: int
    dataset_id: int
    zarr_url: str


class HistoryRunReadAggregated(ResponseModel):
    id: int
    timestamp_started: str
    workflowtask_dump: dict[str, Any]
    num_submitted_units: int
    num_done_units: int
    num_failed_units: int
    num_units_with_warnings: int
    args_schema_parallel: dict[str, Any] | None = None
    args_schema_non_parallel: dict[str, Any] | None = None
    version: str | None = None


class HistoryUnitRead(ResponseModel):
    id: int
    logfile: str | None
    has_warnings: bool
    status: UnitStatus
    zarr_urls: list[str]


class HistoryUnitPage(ResponseModel):
    """fractal-server's `PaginationResponse[HistoryUnitRead]`."""

    current_page: int
    page_size: int
    total_count: int
    items: list[HistoryUnitRead]


class TaskStatusImages(ResponseModel):
    status: UnitStatus
    num_submitted_images: int = 0
    num_done_images: int = 0
    num_failed_images: int = 0
    num_available_images: int | None = 0
    has_warnings: bool = False


class JobWithTaskStatuses(JobRead):
    """The latest job of a (workflow, dataset), with each workflow task's image counts."""

    attribute_filters: dict[str, list[Any]]
    type_filters: dict[str, bool]
    executor_error_log: str | None
    task_statuses: dict[str, TaskStatusImages | None]


class SingleImageWithWarnings(ResponseModel):
    zarr_url: str
    origin: str | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)
    types: dict[str, bool] = Field(default_factory=dict)
    has_warnings: bool | None = None


class ImagePageWithWarnings(ResponseModel):
    current_page: int
    page_size: int
    total_count: int
    items: list[SingleImageWithWarnings]
    attributes: dict[str, list[Any]]
    types: list[str]


def _with_status(attributes_json: str, status: str) -> str:
    """The stored attributes JSON object with the status pseudo-attribute added."""
    members = attributes_json.strip()[1:-1].strip()
    entry = f'"{IMAGE_STATUS_KEY}":{json.dumps(status)}'
    return f"{{{members},{entry}}}" if members else f"{{{entry}}}"


@dataclass(frozen=True)
class RenderedStatusImagePage(RenderedResponse):
    """An `ImagePageWithWarnings` from stored JSON texts (see `RenderedImagePage`); each image
    row ends with its status for the workflow task."""

    total_count: int
    page_size: int
    current_page: int
    attribute_values: Sequence[tuple[str, str]]
    types: Sequence[str]
    images: Sequence[tuple[str, str | None, str, str, str]]
    include_warnings: bool

    def to_json(self) -> bytes:
        dumps = json.dumps
        warnings = "false" if self.include_warnings else "null"
        items = ",".join(
            f'{{"zarr_url":{dumps(zarr_url)},"origin":{dumps(origin)},'
            f'"attributes":{_with_status(attributes_json, status)},"types":{types_json},'
            f'"has_warnings":{warnings}}}'
            for zarr_url, origin, attributes_json, types_json, status in self.images
        )
        return (
            f'{{"current_page":{self.current_page},"page_size":{self.page_size},'
            f'"total_count":{self.total_count},"items":[{items}],'
            f'"attributes":{{{render_attribute_values(self.attribute_values)}}},'
            f'"types":{dumps(list(self.types))}}}'
        ).encode()
