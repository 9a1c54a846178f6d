from typing import Any

from pydantic import Field

from .common import (
    AttributeDict,
    Filters,
    LenientRequestModel,
    ResponseModel,
    TypeDict,
    ZarrPath,
)


class SingleImage(LenientRequestModel):
    zarr_url: ZarrPath
    origin: ZarrPath | None = None
    attributes: AttributeDict = Field(default_factory=dict)
    types: TypeDict = Field(default_factory=dict)


class SingleImageUpdate(LenientRequestModel):
    """A given `attributes` or `types` replaces the stored one whole (as fractal-server 2.6.4)."""

    zarr_url: ZarrPath
    attributes: AttributeDict | None = None
    types: TypeDict | None = None


class ImageQuery(LenientRequestModel):
    zarr_url: str | None = None
    filters: Filters = Field(default_factory=Filters)


class ImagePage(ResponseModel):
    total_count: int
    page_size: int
    current_page: int
    attributes: dict[str, list[Any]]
    types: list[str]
    images: list[SingleImage]
