from pydantic import Field, field_validator

from .common import (
    LenientRequestModel,
    NonEmptyStr,
    RequestModel,
    ResponseModel,
    Timestamp,
    refuse_null,
)


class ProjectCreate(RequestModel):
    name: NonEmptyStr


class ProjectUpdate(LenientRequestModel):
    name: NonEmptyStr | None = Field(default=None)

    _not_null = field_validator("name", mode="before")(refuse_null)


class ProjectRead(ResponseModel):
    id: int
    name: str
    timestamp_created: Timestamp
