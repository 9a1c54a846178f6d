from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, Field, model_validator

from .common import (
    AttributeDict,
    Filters,
    LenientRequestModel,
    RenderedResponse,
    ResponseModel,
    TypeDict,
    ZarrPath,
    check_filter_counts,
    is_normal_zarr_path,
    is_plain_scalar,
    keys_are_plain,
)
from .filters import IMAGE_STATUS_KEY, AttributeFilters

# Each attribute and type of an image is a row of the filter index: an image with 100,000
# attributes took 13 s to add. Fractal's tasks give an image fewer than 10 of each. (Keys and
# string values have their own limits, MAX_KEY_BYTES and MAX_VALUE_BYTES.)
MAX_IMAGE_ATTRIBUTES = 1_000
MAX_IMAGE_TYPES = 1_000


def _at_most(limit: int, what: str) -> AfterValidator:
    def check(value: dict[str, Any]) -> dict[str, Any]:
        if len(value) > limit:
            raise ValueError(f"an image has at most {limit} {what}, not {len(value)}")
        return value

    return AfterValidator(check)


ImageAttributes = Annotated[AttributeDict, _at_most(MAX_IMAGE_ATTRIBUTES, "attributes")]
ImageTypes = Annotated[TypeDict, _at_most(MAX_IMAGE_TYPES, "types")]


class SingleImage(LenientRequestModel):
    zarr_url: ZarrPath
    origin: ZarrPath | None = None
    attributes: ImageAttributes = Field(default_factory=dict)
    types: ImageTypes = Field(default_factory=dict)


def plain_images(items: Sequence[Any]) -> list[dict[str, Any]] | None:
    """`items` as `SingleImage` would give them, as dicts (zarr_url, origin, attributes,
    types), when each is already in the form that validation gives (a normal path, keys
    without blanks, values within their limits); else None, and the caller validates them
    with `SingleImage`, which normalises or refuses them.

    `SingleImage`'s Python validators, called a few times per image, took 0.6 s of an import
    of 100,000 images; this one loop checks the same at a fraction of that.
    """
    images: list[dict[str, Any]] = []
    for item in items:
        if type(item) is not dict:
            return None
        zarr_url = item.get("zarr_url")
        origin = item.get("origin")
        attributes = item.get("attributes", {})
        types = item.get("types", {})
        if (
            type(zarr_url) is not str
            or not is_normal_zarr_path(zarr_url)
            or (origin is not None and (type(origin) is not str or not is_normal_zarr_path(origin)))
            or type(attributes) is not dict
            or len(attributes) > MAX_IMAGE_ATTRIBUTES
            or not keys_are_plain(attributes)
            or not all(map(is_plain_scalar, attributes.values()))
            or type(types) is not dict
            or len(types) > MAX_IMAGE_TYPES
            or not keys_are_plain(types)
            or not all(type(value) is bool for value in types.values())
        ):
            return None
        images.append(
            {"zarr_url": zarr_url, "origin": origin, "attributes": attributes, "types": types}
        )
    return images


class SingleImageUpdate(LenientRequestModel):
    """A given `attributes` or `types` replaces the stored one whole (as fractal-server 2.6.4)."""

    zarr_url: ZarrPath
    attributes: ImageAttributes | None = None
    types: ImageTypes | None = None


def _check_query_filters(filters: Filters) -> Filters:
    check_filter_counts(attribute=filters.attributes, type=filters.types)
    return filters


class ImageQuery(LenientRequestModel):
    """2.6.4's query (`filters`: one value per attribute), plus fractal-server 2.11+'s
    `attribute_filters` (a list of values per attribute: one of them) and `type_filters`;
    an image matches all of them."""

    zarr_url: str | None = None
    filters: Annotated[Filters, AfterValidator(_check_query_filters)] = Field(
        default_factory=Filters
    )
    attribute_filters: AttributeFilters = Field(default_factory=dict)
    type_filters: TypeDict = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_filter_counts(self) -> ImageQuery:
        if IMAGE_STATUS_KEY in self.attribute_filters:
            raise ValueError(
                f"{IMAGE_STATUS_KEY} filters the images of a workflow task: "
                "query them with POST .../status/images/"
            )
        _check_query_filters(
            Filters(
                attributes={**self.filters.attributes, **dict.fromkeys(self.attribute_filters)},
                types={**self.filters.types, **self.type_filters},
            )
        )
        return self


class ImagePage(ResponseModel):
    total_count: int
    page_size: int
    current_page: int
    attributes: dict[str, list[Any]]
    types: list[str]
    images: list[SingleImage]


def render_image_rows(rows: Iterable[tuple[str, str | None, str, str]]) -> str:
    """`SingleImage`s as JSON (no brackets), from (zarr_url, origin, JSON of the attributes,
    JSON of the types) rows as the database stores them."""
    dumps = json.dumps
    return ",".join(
        f'{{"zarr_url":{dumps(zarr_url)},"origin":{dumps(origin)},'
        f'"attributes":{attributes_json},"types":{types_json}}}'
        for zarr_url, origin, attributes_json, types_json in rows
    )


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
        images = render_image_rows(self.images)
        return (
            f'{{"total_count":{self.total_count},"page_size":{self.page_size},'
            f'"current_page":{self.current_page},"attributes":{{{attributes}}},'
            f'"types":{dumps(list(self.types))},"images":[{images}]}}'
        ).encode()


@dataclass(frozen=True)
class RenderedDatasetExport(RenderedResponse):
    """A `DatasetExport`, rendered where the images are read (see `export_dataset`)."""

    text: bytes

    def to_json(self) -> bytes:
        return self.text
