import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from .common import (
    AttributeDict,
    Filters,
    LenientRequestModel,
    RenderedResponse,
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


def render_attribute_values(attribute_values: Sequence[tuple[str, str]]) -> str:
    """The members of the `attributes` summary object, from (key, JSON value) pairs."""
    values_by_key: dict[str, list[str]] = {}
    for key, value in attribute_values:
        values_by_key.setdefault(key, []).append(value)
    return ",".join(
        f"{json.dumps(key)}:[{','.join(values)}]" for key, values in values_by_key.items()
    )


@dataclass(frozen=True)
class RenderedImagePage(RenderedResponse):
    """An `ImagePage` made of the JSON texts the database stores (the image query's answer).

    `attribute_values` are (key, JSON of a value) pairs, grouped by key; `images` are
    (zarr_url, origin, JSON of the attributes, JSON of the types) rows.
    """

    total_count: int
    page_size: int
    current_page: int
    attribute_values: Sequence[tuple[str, str]]
    types: Sequence[str]
    images: Sequence[tuple[str, str | None, str, str]]

    def to_json(self) -> bytes:
        dumps = json.dumps
        attributes = render_attribute_values(self.attribute_values)
        images = ",".join(
            f'{{"zarr_url":{dumps(zarr_url)},"origin":{dumps(origin)},'
            f'"attributes":{attributes_json},"types":{types_json}}}'
            for zarr_url, origin, attributes_json, types_json in self.images
        )
        return (
            f'{{"total_count":{self.total_count},"page_size":{self.page_size},'
            f'"current_page":{self.current_page},"attributes":{{{attributes}}},'
            f'"types":{dumps(list(self.types))},"images":[{images}]}}'
        ).encode()
