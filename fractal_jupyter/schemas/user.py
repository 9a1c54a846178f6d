from pydantic import Field

from .common import ResponseModel


class OAuthAccountRead(ResponseModel):
    id: int
    account_email: str
    oauth_name: str


class UserRead(ResponseModel):
    id: int
    email: str
    is_active: bool
    is_superuser: bool
    is_verified: bool
    username: str
    group_names: list[str] | None = None
    group_ids: list[int] | None = None
    oauth_accounts: list[OAuthAccountRead] = Field(default_factory=list)
