"""`auth/current-user/...`, `auth/register/`, `auth/group-names/`, `api/settings/` and
`api/settings/widgets/`."""

from __future__ import annotations

from typing import Any

from ..schemas.query import GroupNamesQuery
from ..schemas.settings import WidgetSettings
from ..schemas.user import (
    UserCreate,
    UserRead,
    UserSettingsReadStrict,
    UserSettingsUpdateStrict,
    UserUpdateStrict,
)
from ..services import admin, group, user_settings, users
from .base import FractalHandler, operation


class CurrentUserHandler(FractalHandler):
    @operation("The caller", query=GroupNamesQuery, response=UserRead)
    async def get(self, query: GroupNamesQuery) -> UserRead:
        return await users.read_user(self.db_session, self.user.id, group_names=query.group_names)

    @operation(
        "Edit one's own record: nothing can be changed (as fractal-server 2.6.4)",
        body=UserUpdateStrict,
        response=UserRead,
    )
    async def patch(self, body: UserUpdateStrict) -> UserRead:
        return await users.read_user(self.db_session, self.user.id, group_names=True)


class CurrentUserSettingsHandler(FractalHandler):
    @operation("The caller's settings (reduced view)", response=UserSettingsReadStrict)
    async def get(self) -> UserSettingsReadStrict:
        return await user_settings.read_own_settings(self.db_session, self.user.id)

    @operation(
        "Change one's SLURM accounts or cache folder",
        body=UserSettingsUpdateStrict,
        response=UserSettingsReadStrict,
    )
    async def patch(self, body: UserSettingsUpdateStrict) -> UserSettingsReadStrict:
        return await user_settings.update_own_settings(
            self.db_session, self.user, body, user_settings.ServerAccounts.of_state(self.fractal)
        )


class ViewerPathsHandler(FractalHandler):
    @operation("The viewer paths of the caller's groups", response=list[str])
    async def get(self) -> list[str]:
        return await group.viewer_paths_of(self.db_session, self.user.id)


class RegisterHandler(FractalHandler):
    @operation(
        "Create the record of a Jupyter user (admins; a password, if sent, is ignored)",
        body=UserCreate,
        response=UserRead,
        status=201,
        admin=True,
    )
    async def post(self, body: UserCreate) -> UserRead:
        created = await users.register_user(self.db_session, body, self.fractal.admin_users)
        self.fractal.forget_users()
        return created


class GroupNamesHandler(FractalHandler):
    @operation("The names of all groups", response=list[str])
    async def get(self) -> list[str]:
        return await group.group_names(self.db_session)


class SettingsHandler(FractalHandler):
    @operation(
        "The server's configuration, secrets masked (admins)",
        response=dict[str, Any],
        admin=True,
    )
    async def get(self) -> dict[str, Any]:
        return admin.sanitized_settings(self.fractal.config)


class WidgetSettingsHandler(FractalHandler):
    @operation("Deployment settings for the notebook widgets (any user)", response=WidgetSettings)
    async def get(self) -> WidgetSettings:
        template = self.fractal.config.get("viewer_url_template") or None
        return WidgetSettings(viewer_url_template=template)
