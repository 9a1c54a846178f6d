"""User groups (fractal-server 2.6.4: admins manage them; they grant no access, they only
carry `viewer_paths`). Every user joins the default group "All"."""

from __future__ import annotations

from collections import defaultdict
from typing import Literal

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.models import LinkUserGroup, User, UserGroup
from ..errors import FractalError, NotFound, Unprocessable
from ..schemas.group import UserGroupCreate, UserGroupRead, UserGroupUpdate

DEFAULT_GROUP_NAME = "All"


class MethodNotAllowed(FractalError):
    status_code = 405


async def default_group(session: AsyncSession) -> UserGroup:
    """The group "All", made if it is missing (a fresh or emptied database)."""
    group = await session.scalar(select(UserGroup).where(UserGroup.name == DEFAULT_GROUP_NAME))
    if group is None:
        group = UserGroup(name=DEFAULT_GROUP_NAME, viewer_paths=[])
        session.add(group)
        try:
            async with session.begin_nested():
                await session.flush()
        except IntegrityError:
            # Made by a concurrent request in the meantime.
            group = (
                await session.scalars(select(UserGroup).where(UserGroup.name == DEFAULT_GROUP_NAME))
            ).one()
    return group


async def linked_ids(
    session: AsyncSession, ids: list[int], *, of: Literal["group", "user"]
) -> dict[int, list[int]]:
    """The members (user ids) of groups, or the groups of users, each list sorted."""
    group_id, user_id = LinkUserGroup.group_id, LinkUserGroup.user_id
    key, value = (group_id, user_id) if of == "group" else (user_id, group_id)
    links = await session.execute(select(key, value).where(key.in_(ids)).order_by(value))
    linked: dict[int, list[int]] = defaultdict(list)
    for key_id, value_id in links:
        linked[key_id].append(value_id)
    return linked


async def _read(session: AsyncSession, group: UserGroup) -> UserGroupRead:
    members = await linked_ids(session, [group.id], of="group")
    return UserGroupRead.model_validate(group).model_copy(update={"user_ids": members[group.id]})


async def list_groups(session: AsyncSession, user_ids: bool) -> list[UserGroupRead]:
    groups = (await session.scalars(select(UserGroup).order_by(UserGroup.id))).all()
    result = [UserGroupRead.model_validate(group) for group in groups]
    if not user_ids:
        return result
    members = await linked_ids(session, [group.id for group in groups], of="group")
    return [item.model_copy(update={"user_ids": members[item.id]}) for item in result]


async def _group_or_404(session: AsyncSession, group_id: int) -> UserGroup:
    group = await session.get(UserGroup, group_id)
    if group is None:
        raise NotFound(f"Group {group_id} not found.")
    return group


async def get_group(session: AsyncSession, group_id: int) -> UserGroupRead:
    return await _read(session, await _group_or_404(session, group_id))


async def create_group(session: AsyncSession, data: UserGroupCreate) -> UserGroupRead:
    taken = await session.scalar(select(UserGroup.id).where(UserGroup.name == data.name))
    if taken is not None:
        raise Unprocessable("A group with the same name already exists")
    group = UserGroup(name=data.name, viewer_paths=data.viewer_paths)
    session.add(group)
    await session.flush()
    return UserGroupRead.model_validate(group).model_copy(update={"user_ids": []})


async def check_all_exist(
    session: AsyncSession, model: type[User | UserGroup], ids: list[int]
) -> bool:
    if not ids:
        return True
    found = await session.scalar(select(func.count()).where(model.id.in_(ids)))
    return found == len(ids)


async def add_links(session: AsyncSession, links: list[tuple[int, int]], what: str) -> None:
    """Add (group id, user id) links; an existing one makes the whole call a 422."""
    if not links:
        return
    pairs = [LinkUserGroup(group_id=group_id, user_id=user_id) for group_id, user_id in links]
    existing = await session.execute(
        select(LinkUserGroup.group_id, LinkUserGroup.user_id).where(
            LinkUserGroup.group_id.in_({group_id for group_id, _ in links}),
            LinkUserGroup.user_id.in_({user_id for _, user_id in links}),
        )
    )
    already = set(map(tuple, existing.all())) & set(links)
    if already:
        group_id, user_id = sorted(already)[0]
        raise Unprocessable(f"Cannot link {what}: user {user_id} is already in group {group_id}.")
    session.add_all(pairs)
    await session.flush()


async def update_group(
    session: AsyncSession, group_id: int, data: UserGroupUpdate
) -> UserGroupRead:
    group = await _group_or_404(session, group_id)
    if not await check_all_exist(session, User, data.new_user_ids):
        raise NotFound(f"Not all requested users (IDs {data.new_user_ids}) exist.")
    await add_links(
        session,
        [(group_id, user_id) for user_id in data.new_user_ids],
        f"users with IDs {data.new_user_ids} to group {group_id}",
    )
    if data.viewer_paths is not None:
        group.viewer_paths = data.viewer_paths
    await session.flush()
    return await _read(session, group)


async def delete_group(session: AsyncSession, group_id: int) -> None:
    """Refused, as in fractal-server 2.6.4 (whether the group exists or not)."""
    # A list of one message, as 2.6.4 answers (a stray tuple in its source).
    raise MethodNotAllowed(
        ["Deleting a user group is not allowed, as it may restrict previously-granted access."]
    )


async def group_names(session: AsyncSession) -> list[str]:
    return list((await session.scalars(select(UserGroup.name).order_by(UserGroup.id))).all())


async def viewer_paths_of(session: AsyncSession, user_id: int) -> list[str]:
    """The union of the viewer paths of the user's groups, without repeats, in order."""
    lists = await session.scalars(
        select(UserGroup.viewer_paths)
        .join(LinkUserGroup, LinkUserGroup.group_id == UserGroup.id)
        .where(LinkUserGroup.user_id == user_id)
        .order_by(UserGroup.id)
    )
    return list(dict.fromkeys(path for paths in lists for path in paths))
