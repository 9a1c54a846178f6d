"""What the handlers share: the database, the configuration they need, the users seen so far."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from .db.engine import Database
from .services.users import CurrentUser, get_or_create_user


@dataclass
class FractalState:
    database: Database
    admin_users: frozenset[str]
    default_username: str
    log: logging.Logger
    _users: dict[str, CurrentUser] = field(default_factory=dict)
    _ready: asyncio.Task[None] | None = None

    async def ensure_ready(self) -> None:
        """Run the schema migrations once; every request waits for them.

        A failed attempt (database unreachable) is forgotten, so that a later request retries.
        """
        if self._ready is None:
            self._ready = asyncio.ensure_future(self.database.upgrade())
        try:
            await asyncio.shield(self._ready)
        except Exception:
            self._ready = None
            raise

    async def user(self, username: str) -> CurrentUser:
        """The caller's user record, created on first sight and then kept in memory."""
        known = self._users.get(username)
        if known is not None:
            return known
        is_superuser = username in self.admin_users
        async with self.database.session(write=True) as session:
            row = await get_or_create_user(session, username, is_superuser)
            current = CurrentUser(id=row.id, username=row.username, is_superuser=is_superuser)
        self._users[username] = current
        return current
