"""User groups, as fractal-server 2.6.4's `UserGroupRead`, `UserGroupCreate`, `UserGroupUpdate`."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field, field_validator

from .common import NonEmptyStr, RequestModel, ResponseModel, Timestamp, refuse_null
from .query import QueryModel
from .user import AbsolutePath, unique_items

ViewerPaths = Annotated[
    list[AbsolutePath], AfterValidator(lambda value: unique_items(value, "viewer_paths"))
]
UserIds = Annotated[list[int], AfterValidator(lambda value: unique_items(value, "new_user_ids"))]


class UserIdsQuery(QueryModel):
    user_ids: bool = False


class UserGroupRead(ResponseModel):
    id: int
    name: str
    timestamp_created: Timestamp
    user_ids: list[int] | None = None
    viewer_paths: list[str]


class UserGroupCreate(RequestModel):
    name: Annotated[NonEmptyStr, Field(max_length=255)]
    viewer_paths: ViewerPaths = Field(default_factory=list)


class UserGroupUpdate(RequestModel):
    """Users are only added (`new_user_ids`); `viewer_paths`, when given, replaces the list."""

    new_user_ids: UserIds = Field(default_factory=list)
    viewer_paths: ViewerPaths | None = None

    _not_null = field_validator("viewer_paths", mode="before")(refuse_null)
