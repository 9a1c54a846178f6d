"""`auth/group/...`: admins manage user groups."""

from __future__ import annotations

from ..schemas.group import UserGroupCreate, UserGroupRead, UserGroupUpdate, UserIdsQuery
from ..services import group
from .base import FractalHandler, operation


class GroupListHandler(FractalHandler):
    @operation("All groups", query=UserIdsQuery, response=list[UserGroupRead], admin=True)
    async def get(self, query: UserIdsQuery) -> list[UserGroupRead]:
        return await group.list_groups(self.db_session, query.user_ids)

    @operation(
        "Create a group", body=UserGroupCreate, response=UserGroupRead, status=201, admin=True
    )
    async def post(self, body: UserGroupCreate) -> UserGroupRead:
        return await group.create_group(self.db_session, body)


class GroupHandler(FractalHandler):
    @operation("One group, with its users", response=UserGroupRead, admin=True)
    async def get(self, group_id: int) -> UserGroupRead:
        return await group.get_group(self.db_session, group_id)

    @operation(
        "Add users to a group, replace its viewer paths",
        body=UserGroupUpdate,
        response=UserGroupRead,
        admin=True,
    )
    async def patch(self, group_id: int, body: UserGroupUpdate) -> UserGroupRead:
        return await group.update_group(self.db_session, group_id, body)

    @operation("Refused (405), as in fractal-server 2.6.4", status=405, admin=True)
    async def delete(self, group_id: int) -> None:
        await group.delete_group(self.db_session, group_id)
