from pydantic import Field

from .common import LenientRequestModel, NonEmptyStr, RequestModel, ResponseModel, Timestamp


class ProjectCreate(RequestModel):
    name: NonEmptyStr


class ProjectUpdate(LenientRequestModel):
    name: NonEmptyStr | None = Field(default=None)


class ProjectRead(ResponseModel):
    id: int
    name: str
    timestamp_created: Timestamp
