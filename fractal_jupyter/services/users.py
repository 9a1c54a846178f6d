"""Users come from Jupyter's identity: a row is made the first time a username is seen.

Admins (`FractalJupyter.admin_users`) are fractal-server's superusers: `is_superuser` follows
that configuration on every visit, so the API can read it but not change it. Passwords are
Jupyter's business: one sent to `auth/register/` or `PATCH auth/users/{id}/` is ignored.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.models import LinkUserGroup, User, UserGroup, UserSettings
from ..errors import Forbidden, FractalError, NotFound, Unprocessable
from ..schemas.user import UserCreate, UserRead, UserUpdate, check_username
from .group import add_links, check_all_exist, default_group, linked_ids

# fractal-server requires an e-mail address; Jupyter identities have none.
EMAIL_DOMAIN = "fractal-jupyter.localhost"


@dataclass(frozen=True)
class CurrentUser:
    """The caller of a request, as the services see it."""

    id: int
    username: str
    is_superuser: bool


class BadRequest(FractalError):
    status_code = 400


def email_for(username: str) -> str:
    """The made-up address of a user, which follows the username when an admin renames it.

    Addresses at EMAIL_DOMAIN are nobody else's (see `_check_email`), so a new user's made-up
    address is free as long as usernames are unique.
    """
    return f"{username}@{EMAIL_DOMAIN}"


async def _check_email(
    session: AsyncSession, email: str, username: str, user_id: int | None, taken: FractalError
) -> None:
    """`email` may be `username`'s (user `user_id`, None for a new user): `taken` if another
    user has it (compared without case, as e-mail addresses are)."""
    if email.rpartition("@")[2].lower() == EMAIL_DOMAIN and email != email_for(username):
        raise Unprocessable(
            f"E-mail addresses at {EMAIL_DOMAIN} are made up from usernames: user "
            f"'{username}' may only have '{email_for(username)}' there, not '{email}'."
        )
    query = select(User.id).where(func.lower(User.email) == email.lower())
    if user_id is not None:
        query = query.where(User.id != user_id)
    if await session.scalar(query.limit(1)) is not None:
        raise taken


async def _new_user(
    session: AsyncSession,
    username: str,
    email: str,
    is_superuser: bool,
    *,
    is_active: bool = True,
    is_verified: bool = True,
) -> User:
    """A user row with its settings, in the default group; raises IntegrityError on a clash."""
    group = await default_group(session)
    user = User(
        username=username,
        email=email,
        is_superuser=is_superuser,
        is_active=is_active,
        is_verified=is_verified,
    )
    async with session.begin_nested():
        session.add(user)
        await session.flush()
        session.add(UserSettings(user_id=user.id, slurm_accounts=[]))
        session.add(LinkUserGroup(user_id=user.id, group_id=group.id))
        await session.flush()
    return user


async def get_or_create_user(session: AsyncSession, username: str, is_superuser: bool) -> User:
    """The user row for `username`, created on first sight; `is_superuser` follows the config."""
    user = await session.scalar(select(User).where(User.username == username))
    if user is None:
        await _check_email(
            session,
            email_for(username),
            username,
            None,
            Unprocessable(
                f"No Fractal user can be made for '{username}': its e-mail address "
                f"{email_for(username)} belongs to another user (renamed before this version "
                "made addresses follow usernames). A Fractal administrator must change that "
                "user's e-mail address."
            ),
        )
        try:
            user = await _new_user(session, username, email_for(username), is_superuser)
        except IntegrityError:
            # Another request created it between our read and our write.
            user = (await session.scalars(select(User).where(User.username == username))).one()
    if user.is_superuser != is_superuser:
        user.is_superuser = is_superuser
    return user


async def caller(session: AsyncSession, username: str, is_superuser: bool) -> CurrentUser:
    """The caller of a request; a user an admin deactivated gets 403 everywhere."""
    try:
        check_username(username)
    except ValueError as error:
        raise Forbidden(f"The Jupyter user {username!r} cannot use Fractal: {error}.") from None
    user = await get_or_create_user(session, username, is_superuser)
    if not user.is_active:
        raise Forbidden(f"User '{username}' has been deactivated by a Fractal administrator.")
    return CurrentUser(id=user.id, username=user.username, is_superuser=is_superuser)


async def is_still_active(session: AsyncSession, user_id: int) -> bool:
    """Whether the user's row is still there and active (a cheap re-check of a known caller)."""
    return bool(await session.scalar(select(User.is_active).where(User.id == user_id)))


async def _user_or_404(session: AsyncSession, user_id: int) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound("User not found.")
    return user


async def _with_group_ids(session: AsyncSession, user: User) -> UserRead:
    groups = await linked_ids(session, [user.id], of="user")
    return UserRead.model_validate(user).model_copy(update={"group_ids": groups[user.id]})


async def read_user(session: AsyncSession, user_id: int, *, group_names: bool) -> UserRead:
    """The caller as fractal-server's `UserRead`, with the names of their groups if asked."""
    user = await _user_or_404(session, user_id)
    model = UserRead.model_validate(user)
    if not group_names:
        return model
    names = await session.scalars(
        select(UserGroup.name)
        .join(LinkUserGroup, LinkUserGroup.group_id == UserGroup.id)
        .where(LinkUserGroup.user_id == user_id)
        .order_by(UserGroup.id)
    )
    return model.model_copy(update={"group_names": list(names)})


async def list_users(session: AsyncSession) -> list[UserRead]:
    users = (await session.scalars(select(User).order_by(User.id))).all()
    groups = await linked_ids(session, [user.id for user in users], of="user")
    return [
        UserRead.model_validate(user).model_copy(update={"group_ids": groups[user.id]})
        for user in users
    ]


async def get_user(session: AsyncSession, user_id: int, *, group_ids: bool) -> UserRead:
    user = await _user_or_404(session, user_id)
    if group_ids:
        return await _with_group_ids(session, user)
    return UserRead.model_validate(user)


def _check_superuser_flag(requested: bool | None, username: str, admins: Collection[str]) -> None:
    if requested is not None and requested != (username in admins):
        state = "is" if username in admins else "is not"
        raise Unprocessable(
            f"is_superuser cannot be set here: '{username}' {state} in "
            "FractalJupyter.admin_users, the configuration that decides who is an administrator."
        )


async def register_user(
    session: AsyncSession, data: UserCreate, admins: Collection[str]
) -> UserRead:
    """The record of a Jupyter user, e.g. to preset their settings before their first visit."""
    username = data.jupyter_username
    _check_superuser_flag(data.is_superuser, username, admins)
    exists = BadRequest("REGISTER_USER_ALREADY_EXISTS")
    if await session.scalar(select(User.id).where(User.username == username)) is not None:
        raise exists
    await _check_email(session, data.email, username, None, exists)
    try:
        user = await _new_user(
            session,
            username,
            data.email,
            username in admins,
            is_active=data.is_active,
            is_verified=data.is_verified,
        )
    except IntegrityError:
        raise BadRequest("REGISTER_USER_ALREADY_EXISTS") from None
    return await _with_group_ids(session, user)


async def update_user(
    session: AsyncSession, user_id: int, data: UserUpdate, admins: Collection[str]
) -> UserRead:
    """Either the user's attributes or new group memberships, as fractal-server 2.6.4."""
    attributes = data.model_dump(exclude_unset=True, exclude={"new_group_ids", "password"})
    if "password" in data.model_fields_set:
        attributes["password"] = None  # counts as an attribute edit; the value is ignored
    if attributes and data.new_group_ids is not None:
        raise Unprocessable(
            "Cannot modify both user attributes and group membership. "
            "Please make two independent PATCH calls"
        )
    user = await _user_or_404(session, user_id)
    if data.new_group_ids is not None:
        if not await check_all_exist(session, UserGroup, data.new_group_ids):
            raise NotFound(f"Not all requested groups (IDs: {data.new_group_ids}) exist.")
        await add_links(
            session,
            [(group_id, user_id) for group_id in data.new_group_ids],
            f"groups with IDs {data.new_group_ids} to user {user_id}",
        )
        return await _with_group_ids(session, user)
    username = data.username if data.username is not None else user.username
    _check_superuser_flag(data.is_superuser, username, admins)
    email = data.email
    if data.username is not None and data.username != user.username:
        taken = await session.scalar(select(User.id).where(User.username == data.username))
        if taken is not None:
            raise Unprocessable(f"Username '{data.username}' is already taken.")
        if email is None and user.email == email_for(user.username):
            email = email_for(data.username)
            await _check_email(
                session,
                email,
                data.username,
                user.id,
                Unprocessable(
                    f"Renaming '{user.username}' to '{data.username}' would move its e-mail "
                    f"address to {email}, which belongs to another user; give that user "
                    "another address first, or this one another address in the same request."
                ),
            )
        user.username = data.username
        user.is_superuser = data.username in admins
    if data.email is not None:
        await _check_email(
            session,
            data.email,
            user.username,
            user.id,
            BadRequest("UPDATE_USER_EMAIL_ALREADY_EXISTS"),
        )
    if email is not None:
        user.email = email
    if data.is_active is not None:
        user.is_active = data.is_active
    if data.is_verified is not None:
        user.is_verified = data.is_verified
    await session.flush()
    return await _with_group_ids(session, user)
