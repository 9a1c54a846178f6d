from typing import Any

from pydantic import Field, field_validator

from .common import (
    Filters,
    NonEmptyStr,
    RequestModel,
    ResponseModel,
    Timestamp,
    ZarrPath,
    refuse_null,
)
from .images import SingleImage
from .project import ProjectRead


class DatasetCreate(RequestModel):
    name: NonEmptyStr
    zarr_dir: ZarrPath
    filters: Filters = Field(default_factory=Filters)


class DatasetUpdate(RequestModel):
    """Fields left out stay as they are; `null` is refused (there is nothing to set it to)."""

    name: NonEmptyStr | None = None
    zarr_dir: ZarrPath | None = None
    filters: Filters | None = None

    _not_null = field_validator("name", "zarr_dir", "filters", mode="before")(refuse_null)


class DatasetImport(RequestModel):
    name: NonEmptyStr
    zarr_dir: ZarrPath
    images: list[SingleImage] = Field(default_factory=list)
    filters: Filters = Field(default_factory=Filters)


class DatasetExport(ResponseModel):
    name: str
    zarr_dir: str
    images: list[SingleImage]
    filters: Filters


class DatasetRead(ResponseModel):
    id: int
    name: str
    project_id: int
    project: ProjectRead
    history: list[dict[str, Any]]
    timestamp_created: Timestamp
    zarr_dir: str
    filters: Filters
