"""Per-user settings (fractal-server 2.6.4's `user_settings`): SLURM accounts and user, cache
folder, and the SSH connection the `slurm_ssh` backend uses for this user.

Users read a reduced view of their own settings and change only `slurm_accounts` and
`cache_dir`; admins read and change everything of anyone. Other code asks for a user's
settings with `settings_of` and for the SLURM account of a job with `slurm_account_for_job`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.models import User, UserSettings
from ..errors import NotFound, Unprocessable
from ..schemas.user import (
    UserSettingsRead,
    UserSettingsReadStrict,
    UserSettingsUpdate,
    UserSettingsUpdateStrict,
)

SSH_FIELDS = ("ssh_host", "ssh_username", "ssh_private_key_path", "ssh_tasks_dir", "ssh_jobs_dir")


async def _settings_row(session: AsyncSession, user_id: int) -> UserSettings:
    """The user's settings row; made if missing (a user of a database older than settings)."""
    row = await session.scalar(select(UserSettings).where(UserSettings.user_id == user_id))
    if row is not None:
        return row
    if await session.get(User, user_id) is None:
        raise NotFound("User not found.")
    row = UserSettings(user_id=user_id, slurm_accounts=[])
    try:
        async with session.begin_nested():
            session.add(row)
            await session.flush()
    except IntegrityError:
        row = (
            await session.scalars(select(UserSettings).where(UserSettings.user_id == user_id))
        ).one()
    return row


async def settings_of(session: AsyncSession, user_id: int) -> UserSettingsRead:
    """All the settings of a user, for the code that needs them (job submission, backends)."""
    return UserSettingsRead.model_validate(await _settings_row(session, user_id))


def ssh_settings(settings: UserSettingsRead) -> dict[str, str] | None:
    """The user's `ssh_*` settings when all five are set (what `slurm_ssh` needs), else None."""
    values = {name: getattr(settings, name) for name in SSH_FIELDS}
    if any(value is None for value in values.values()):
        return None
    return values


def missing_settings(settings: UserSettingsRead, backend: str) -> list[str]:
    """Settings a backend needs that the user lacks (fractal-server 2.6.4's rule)."""
    required: tuple[str, ...] = ()
    if backend == "slurm_ssh":
        required = (*SSH_FIELDS, "slurm_accounts")
    elif backend == "slurm":
        required = ("slurm_user", "cache_dir", "slurm_accounts")
    return [name for name in required if getattr(settings, name) in (None, [])]


async def slurm_account_for_job(
    session: AsyncSession, user_id: int, requested: str | None
) -> str | None:
    """The SLURM account of a new job: the requested one if it is among the user's accounts,
    else the first of them (None when the user has none), as fractal-server 2.6.4 does."""
    accounts = (await _settings_row(session, user_id)).slurm_accounts
    if requested is not None:
        if requested not in accounts:
            raise Unprocessable(
                f"SLURM account '{requested}' is not among those available to the current user"
            )
        return requested
    return accounts[0] if accounts else None


def _apply(row: UserSettings, changes: dict[str, Any]) -> None:
    for name, value in changes.items():
        if name == "slurm_accounts" and value is None:
            value = []
        setattr(row, name, value)


async def read_own_settings(session: AsyncSession, user_id: int) -> UserSettingsReadStrict:
    return UserSettingsReadStrict.model_validate(await _settings_row(session, user_id))


async def update_own_settings(
    session: AsyncSession, user_id: int, data: UserSettingsUpdateStrict
) -> UserSettingsReadStrict:
    row = await _settings_row(session, user_id)
    _apply(row, data.model_dump(exclude_unset=True))
    await session.flush()
    return UserSettingsReadStrict.model_validate(row)


async def update_user_settings(
    session: AsyncSession, user_id: int, data: UserSettingsUpdate
) -> UserSettingsRead:
    row = await _settings_row(session, user_id)
    _apply(row, data.model_dump(exclude_unset=True))
    await session.flush()
    return UserSettingsRead.model_validate(row)
