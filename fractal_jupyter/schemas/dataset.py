from __future__ import annotations

import os
from typing import Annotated, Any

from pydantic import AfterValidator, Field, field_validator, model_validator

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


def _check_subfolder(value: str) -> str:
    value = value.strip()
    parts = value.split("/")
    if value.startswith("/") or ".." in parts:
        raise ValueError(f"'{value}' must be a relative path inside `project_dir` (no '..')")
    return os.path.normpath(value)


class DatasetCreate(RequestModel):
    """2.6.4 names `zarr_dir`; 2.18+ names `project_dir` and/or `zarr_subfolder` instead, or
    neither (`services/dataset.default_zarr_dir`)."""

    name: NonEmptyStr
    zarr_dir: ZarrPath | None = None
    filters: Filters = Field(default_factory=Filters)
    project_dir: ZarrPath | None = None
    zarr_subfolder: Annotated[NonEmptyStr, AfterValidator(_check_subfolder)] | None = None

    @model_validator(mode="after")
    def _zarr_dir_or_project_dir(self) -> DatasetCreate:
        if self.zarr_dir is not None and (
            self.project_dir is not None or self.zarr_subfolder is not None
        ):
            raise ValueError(
                "Give `zarr_dir` (fractal-server 2.6), or `project_dir` and/or `zarr_subfolder` "
                "(2.18+), not both"
            )
        return self


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
