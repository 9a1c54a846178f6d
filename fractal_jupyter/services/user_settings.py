"""Per-user settings (fractal-server 2.6.4's `user_settings`).

Only `slurm_accounts` is used (the SLURM account of a job: `slurm_account_for_job`). The
others (`slurm_user`, `cache_dir`, `ssh_*`) are kept for 2.6.4's request and answer shapes, but
a value other than null or the one the server uses anyway is refused with the reason
(`refuse_unused_settings`): jobs run as the server's own account, in folders and over an SSH
connection the server's configuration sets for all its users.

Users read a reduced view of their own settings and change only `slurm_accounts` and
`cache_dir`; admins read and change everything of anyone.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.models import User, UserSettings
from ..errors import NotFound, Unprocessable
from ..runner.settings import Backend
from ..schemas.user import (
    UserSettingsRead,
    UserSettingsReadStrict,
    UserSettingsUpdate,
    UserSettingsUpdateStrict,
)
from .users import CurrentUser

if TYPE_CHECKING:
    from ..state import FractalState

# The settings of fractal-server 2.6.4 that fractal-jupyter does not use, and why. A request
# may set them only to null or to the value the server uses anyway (`accepted_values`), so that
# nobody believes a value has an effect it has not (docs/compatibility.md, "User settings").
UNUSED_SETTINGS = {
    "slurm_user": "jobs run as the OS account of the user's own Jupyter server (there is no sudo)",
    "cache_dir": "job folders go to FractalJupyter.working_dir (slurm_ssh_remote_dir on the "
    "cluster), set by the administrator",
    "ssh_host": "the login node is FractalJupyter.slurm_ssh_host, one for all users of a server",
    "ssh_username": "the login-node user is FractalJupyter.slurm_ssh_user, one for all users of "
    "a server",
    "ssh_private_key_path": "the SSH key is FractalJupyter.slurm_ssh_key_path, one for all users "
    "of a server",
    "ssh_tasks_dir": "tasks are collected on the server's host, into FractalJupyter.tasks_dir",
    "ssh_jobs_dir": "job folders on the cluster go to FractalJupyter.slurm_ssh_remote_dir, one "
    "for all users of a server",
}
# The server setting an ssh_* field names, when the server has that setting.
SSH_SETTINGS = {
    "ssh_host": "slurm_ssh_host",
    "ssh_username": "slurm_ssh_user",
    "ssh_private_key_path": "slurm_ssh_key_path",
    "ssh_jobs_dir": "slurm_ssh_remote_dir",
}


@dataclass(frozen=True)
class ServerAccounts:
    """Who this server runs jobs as and how it reaches the cluster: the only values the
    unused settings may take besides null."""

    os_user: str  # the OS account of this server (it runs the jobs)
    owner: str  # the Fractal user this server belongs to
    ssh: dict[str, str] = field(default_factory=dict)  # ssh_* field -> the server's value

    @classmethod
    def of_state(cls, state: FractalState) -> ServerAccounts:
        """From the server's `FractalState`: its owner (or, outside JupyterHub, the user it
        runs for) and its configuration."""
        config = state.config
        ssh = {}
        if Backend(config.get("runner_backend", Backend.LOCAL)).over_ssh:
            ssh = {name: str(config.get(trait) or "") for name, trait in SSH_SETTINGS.items()}
        owner = state.server_owner or state.default_username
        return cls(os_user=getpass.getuser(), owner=owner, ssh=ssh)

    def accepted_values(self, name: str, username: str) -> set[str]:
        """The non-null values of unused setting `name` that are true for `username`."""
        if name == "slurm_user":
            # Under JupyterHub the user's server runs as their own account, named as they are.
            return {username, self.os_user} if username == self.owner else {username}
        value = self.ssh.get(name, "")
        return {value} if value else set()


def refuse_unused_settings(changes: dict[str, Any], username: str, server: ServerAccounts) -> None:
    """422, per field, for a value of an unused setting other than null or the true one."""
    problems = []
    for name, value in changes.items():
        if name not in UNUSED_SETTINGS or value is None:
            continue
        accepted = server.accepted_values(name, username)
        if value in accepted:
            continue
        allowed = " or ".join(["null", *(repr(item) for item in sorted(accepted))])
        problems.append(
            {
                "loc": ["body", name],
                "msg": f"{name} is not used by fractal-jupyter: {UNUSED_SETTINGS[name]}. "
                f"It may only be {allowed}, not {value!r}.",
                "type": "value_error",
                "input": value,
            }
        )
    if problems:
        raise Unprocessable(problems)


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
    session: AsyncSession, user: CurrentUser, data: UserSettingsUpdateStrict, server: ServerAccounts
) -> UserSettingsReadStrict:
    changes = data.model_dump(exclude_unset=True)
    refuse_unused_settings(changes, user.username, server)
    row = await _settings_row(session, user.id)
    _apply(row, changes)
    await session.flush()
    return UserSettingsReadStrict.model_validate(row)


async def update_user_settings(
    session: AsyncSession, user_id: int, data: UserSettingsUpdate, server: ServerAccounts
) -> UserSettingsRead:
    row = await _settings_row(session, user_id)
    user = await session.get(User, user_id)
    assert user is not None  # the row's owner
    changes = data.model_dump(exclude_unset=True)
    refuse_unused_settings(changes, user.username, server)
    _apply(row, changes)
    await session.flush()
    return UserSettingsRead.model_validate(row)
