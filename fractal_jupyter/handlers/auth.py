from __future__ import annotations

from ..schemas.query import GroupNamesQuery
from ..schemas.user import UserRead
from ..services import users
from .base import FractalHandler, operation


class CurrentUserHandler(FractalHandler):
    @operation("The caller", query=GroupNamesQuery, response=UserRead)
    async def get(self, query: GroupNamesQuery) -> UserRead:
        return await users.read_user(self.db_session, self.user.id, group_names=query.group_names)
