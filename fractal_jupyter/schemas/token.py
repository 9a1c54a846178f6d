"""The token login of fractal-server 2.6.4 (fastapi-users' OAuth2 password form)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from .common import ResponseModel


class LoginForm(BaseModel):
    """`application/x-www-form-urlencoded`; other OAuth2 fields (grant_type, scope) ignored."""

    model_config = ConfigDict(extra="ignore")

    username: str = Field(
        min_length=1,
        description="The Jupyter (or JupyterHub) username, or the e-mail address shown by "
        "auth/current-user/.",
    )
    password: str = Field(
        min_length=1,
        description="A Jupyter credential of that user: a token (or password) this server's "
        "identity provider accepts for them, or under JupyterHub an API token of the hub user.",
    )


class BearerToken(ResponseModel):
    access_token: str
    token_type: str = "bearer"
