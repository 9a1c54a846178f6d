"""Users and their settings, as fractal-server 2.6.4's `UserRead`, `UserCreate`, `UserUpdate*`
and `UserSettings*` (usernames come from Jupyter; passwords are Jupyter's business)."""

from __future__ import annotations

import os
import unicodedata
from typing import Annotated, Any

from pydantic import AfterValidator, Field, StrictStr, field_validator, model_validator

from ..commands import FORBIDDEN_COMMAND_CHARACTERS
from .common import (
    MAX_PATH_BYTES,
    LenientRequestModel,
    NonEmptyStr,
    RequestModel,
    ResponseModel,
    refuse_null,
)
from .query import QueryModel


class GroupIdsQuery(QueryModel):
    group_ids: bool = True


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


def _check_email(value: str) -> str:
    value = value.strip()
    local, at, domain = value.rpartition("@")
    if not at or not local or "." not in domain or " " in value or _unprintable(value):
        raise ValueError(f"{value!r} is not a valid e-mail address")
    if len(value) > 320:
        raise ValueError("an e-mail address has at most 320 characters")
    return value


Email = Annotated[str, AfterValidator(_check_email)]

MAX_USERNAME_CHARS = 255
# Control characters (NUL, tabs, line breaks...), lone surrogates and line/paragraph separators.
_UNPRINTABLE = frozenset({"Cc", "Cs", "Zl", "Zp"})


def check_username(value: str) -> str:
    """The rule for every username: from a request body (stripped first, as fractal-server
    does) and from the caller's Jupyter identity (taken as it is)."""
    if not value.strip():
        raise ValueError("a username must not be empty or blank")
    if value != value.strip():
        raise ValueError(f"username {value!r} begins or ends with blanks")
    if len(value) > MAX_USERNAME_CHARS:
        raise ValueError(f"a username has at most {MAX_USERNAME_CHARS} characters")
    unprintable = _unprintable(value)
    if unprintable:
        raise ValueError(f"a username must not contain control characters (found {unprintable})")
    return value


def _unprintable(value: str) -> str:
    """The control characters of `value` as "U+0000, U+000A", or ""."""
    found = sorted({char for char in value if unicodedata.category(char) in _UNPRINTABLE})
    return ", ".join(f"U+{ord(char):04X}" for char in found)


Username = Annotated[NonEmptyStr, AfterValidator(check_username)]


class UserCreate(LenientRequestModel):
    """`POST auth/register/`: the record of a Jupyter user, made before their first visit.

    `password` is accepted for fractal clients and ignored: who a caller is comes from
    Jupyter. Without `username`, the part of `email` before "@" is the Jupyter username.
    `is_superuser` must agree with `FractalJupyter.admin_users`.
    """

    email: Email
    password: StrictStr | None = None
    is_active: bool = True
    is_superuser: bool = False
    is_verified: bool = True
    username: Username | None = None

    @model_validator(mode="after")
    def _check_jupyter_username(self) -> UserCreate:
        check_username(self.jupyter_username)
        return self

    @property
    def jupyter_username(self) -> str:
        """`username`, or else the part of `email` before "@"."""
        return self.username or self.email.rpartition("@")[0]


class UserUpdate(RequestModel):
    """`PATCH auth/users/{id}/`: user attributes, or `new_group_ids` (not both in one call).

    `password` is accepted and ignored (see `UserCreate`); `is_superuser` follows
    `FractalJupyter.admin_users` and cannot be changed here.
    """

    password: StrictStr | None = None
    email: Email | None = None
    is_active: bool | None = None
    is_superuser: bool | None = None
    is_verified: bool | None = None
    username: Username | None = None
    new_group_ids: list[int] | None = None

    @field_validator("email", "password", "is_active", "is_superuser", "is_verified", "username")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        return refuse_null(value)

    @field_validator("new_group_ids")
    @classmethod
    def _unique(cls, value: list[int] | None) -> list[int] | None:
        return unique_items(value, "new_group_ids")


class UserUpdateStrict(RequestModel):
    """`PATCH auth/current-user/`: nothing of one's own record can be changed (as 2.6.4)."""


def unique_items(value: list[Any] | None, what: str) -> list[Any] | None:
    if value is not None and len(set(value)) != len(value):
        raise ValueError(f"{what} has repeated items")
    return value


def _absolute_path(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("must not be empty")
    if not os.path.isabs(value):
        raise ValueError(f"'{value}' is not an absolute path")
    if len(value.encode()) > MAX_PATH_BYTES:
        raise ValueError(f"path is longer than {MAX_PATH_BYTES} bytes")
    return value


def _command_safe_path(value: str) -> str:
    bad = sorted({char for char in value if char in FORBIDDEN_COMMAND_CHARACTERS})
    if bad:
        raise ValueError(f"must not contain any of {''.join(bad)!r}")
    return _absolute_path(value)


AbsolutePath = Annotated[str, AfterValidator(_absolute_path)]
CommandSafePath = Annotated[str, AfterValidator(_command_safe_path)]
SlurmAccounts = Annotated[
    list[NonEmptyStr], AfterValidator(lambda value: unique_items(value, "slurm_accounts"))
]


class UserSettingsRead(ResponseModel):
    """Everything, for admins (`auth/users/{id}/settings/`)."""

    id: int
    ssh_host: str | None = None
    ssh_username: str | None = None
    ssh_private_key_path: str | None = None
    ssh_tasks_dir: str | None = None
    ssh_jobs_dir: str | None = None
    slurm_user: str | None = None
    slurm_accounts: list[str]
    cache_dir: str | None = None


class UserSettingsReadStrict(ResponseModel):
    """What a user sees of their own settings (`auth/current-user/settings/`)."""

    slurm_user: str | None = None
    slurm_accounts: list[str]
    cache_dir: str | None = None
    ssh_username: str | None = None


class UserSettingsUpdate(RequestModel):
    """Admins set any field; null clears it (`slurm_accounts: null` empties the list)."""

    ssh_host: NonEmptyStr | None = None
    ssh_username: NonEmptyStr | None = None
    ssh_private_key_path: AbsolutePath | None = None
    ssh_tasks_dir: AbsolutePath | None = None
    ssh_jobs_dir: AbsolutePath | None = None
    slurm_user: NonEmptyStr | None = None
    slurm_accounts: SlurmAccounts | None = None
    cache_dir: CommandSafePath | None = None


class UserSettingsUpdateStrict(RequestModel):
    """Users change only their SLURM accounts and cache folder."""

    slurm_accounts: SlurmAccounts | None = None
    cache_dir: CommandSafePath | None = None
