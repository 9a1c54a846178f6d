"""`auth/users/...`: admins read and edit every user record and its settings."""

from __future__ import annotations

from ..schemas.user import (
    GroupIdsQuery,
    UserRead,
    UserSettingsRead,
    UserSettingsUpdate,
    UserUpdate,
)
from ..services import user_settings, users
from .base import FractalHandler, operation


class UserListHandler(FractalHandler):
    @operation("All users, with their group ids", response=list[UserRead], admin=True)
    async def get(self) -> list[UserRead]:
        return await users.list_users(self.db_session)


class UserHandler(FractalHandler):
    @operation("One user", query=GroupIdsQuery, response=UserRead, admin=True)
    async def get(self, user_id: int, query: GroupIdsQuery) -> UserRead:
        return await users.get_user(self.db_session, user_id, group_ids=query.group_ids)

    @operation(
        "Edit a user, or add them to groups (`is_superuser` follows admin_users)",
        body=UserUpdate,
        response=UserRead,
        admin=True,
    )
    async def patch(self, user_id: int, body: UserUpdate) -> UserRead:
        updated = await users.update_user(self.db_session, user_id, body, self.fractal.admin_users)
        self.fractal.forget_users()
        return updated


class UserSettingsHandler(FractalHandler):
    @operation("A user's settings", response=UserSettingsRead, admin=True)
    async def get(self, user_id: int) -> UserSettingsRead:
        return await user_settings.settings_of(self.db_session, user_id)

    @operation(
        "Change a user's settings", body=UserSettingsUpdate, response=UserSettingsRead, admin=True
    )
    async def patch(self, user_id: int, body: UserSettingsUpdate) -> UserSettingsRead:
        return await user_settings.update_user_settings(
            self.db_session, user_id, body, user_settings.ServerAccounts.of_state(self.fractal)
        )
