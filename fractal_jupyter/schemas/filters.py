"""Image filters of fractal-server 2.11+: lists of values (OR within a key), type flags."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, Field, model_validator

from .common import (
    AttributeScalar,
    RequestModel,
    TypeDict,
    check_dict_keys,
    check_filter_counts,
)

IMAGE_STATUS_KEY = "__wftask_dataset_image_status__"
IMAGE_STATUSES = ("done", "failed", "submitted", "unset")


def _check_status_values(filters: dict[str, list[Any]]) -> dict[str, list[Any]]:
    wrong = [value for value in filters.get(IMAGE_STATUS_KEY, []) if value not in IMAGE_STATUSES]
    if wrong:
        raise ValueError(f"{IMAGE_STATUS_KEY} takes the values {list(IMAGE_STATUSES)}, not {wrong}")
    return filters


# {key: [values]}: an image matches a key when it has one of the values (fractal-server 2.11+).
AttributeFilters = Annotated[
    dict[str, Annotated[list[AttributeScalar], Field(min_length=1)]],
    AfterValidator(check_dict_keys),
    AfterValidator(_check_status_values),
]


class ImageFilterQuery(RequestModel):
    """fractal-server 2.26's `ImageQuery`: type filters and attribute filters with lists."""

    type_filters: TypeDict = Field(default_factory=dict)
    attribute_filters: AttributeFilters = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_counts(self) -> ImageFilterQuery:
        check_filter_counts(attribute=self.attribute_filters, type=self.type_filters)
        return self
