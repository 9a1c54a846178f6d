"""Users come from Jupyter's identity: a row is made the first time a username is seen."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.models import User
from ..errors import NotFound
from ..schemas.user import UserRead

# fractal-server requires an e-mail address; Jupyter identities have none.
EMAIL_DOMAIN = "fractal-jupyter.localhost"


@dataclass(frozen=True)
class CurrentUser:
    """The caller of a request, as the services see it."""

    id: int
    username: str
    is_superuser: bool


def email_for(username: str) -> str:
    return f"{username}@{EMAIL_DOMAIN}"


async def get_or_create_user(session: AsyncSession, username: str, is_superuser: bool) -> User:
    """The user row for `username`, created on first sight; `is_superuser` follows the config."""
    user = await session.scalar(select(User).where(User.username == username))
    if user is None:
        user = User(username=username, email=email_for(username), is_superuser=is_superuser)
        session.add(user)
        try:
            async with session.begin_nested():
                await session.flush()
        except IntegrityError:
            # Another request created it between our read and our write.
            user = (await session.scalars(select(User).where(User.username == username))).one()
    if user.is_superuser != is_superuser:
        user.is_superuser = is_superuser
    return user


async def read_user(session: AsyncSession, user_id: int, *, group_names: bool) -> UserRead:
    """The user as fractal-server's `UserRead`; groups come with the users-and-groups API."""
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound(f"User {user_id} not found")
    model = UserRead.model_validate(user)
    return model.model_copy(update={"group_names": []}) if group_names else model
