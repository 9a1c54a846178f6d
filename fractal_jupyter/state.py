"""What the handlers share: the database, the configuration they need, the users seen so far."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from .db.engine import Database
from .runner.launcher import JobLauncher
from .services.job import RunnerSettings
from .services.job_watcher import JobWatcher
from .services.task_collection import TaskCollector
from .services.users import CurrentUser, caller
from .tokens import TokenSigner


@dataclass
class FractalState:
    database: Database
    admin_users: frozenset[str]
    default_username: str
    log: logging.Logger
    runner: RunnerSettings
    # Task collections (pip into per-package venvs under tasks_dir), run in the background.
    collector: TaskCollector
    job_poll_interval: float = 0.5
    launcher: JobLauncher = field(default_factory=JobLauncher)
    # Bearer tokens for REST clients (tokens.py); None only in states built without a data_dir.
    tokens: TokenSigner | None = None
    # Under JupyterHub: the server's owner (only they may run jobs), the hub's API and the
    # scopes that give access to this server (to check hub tokens given to the login route).
    server_owner: str = ""
    hub_api_url: str = ""
    hub_access_scopes: frozenset[str] = frozenset()
    # The FractalJupyter configuration values, for `GET api/settings/` (secrets masked there).
    config: dict[str, Any] = field(default_factory=dict)
    _users: dict[str, CurrentUser] = field(default_factory=dict)
    _ready: asyncio.Task[None] | None = None
    _watcher: JobWatcher | None = None

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
        self.start_watching_jobs()

    async def user(self, username: str) -> CurrentUser:
        """The caller's user record, created on first sight and then kept in memory."""
        known = self._users.get(username)
        if known is not None:
            return known
        is_superuser = username in self.admin_users
        async with self.database.session(write=True) as session:
            current = await caller(session, username, is_superuser)
        self._users[username] = current
        return current

    def forget_users(self) -> None:
        """An admin changed users (name, active flag): look them up again on their next call."""
        self._users.clear()

    def start_watching_jobs(self) -> None:
        if self._watcher is None:
            self._watcher = JobWatcher(
                self.database,
                self.launcher,
                self.runner.working_dir,
                self.log,
                self.job_poll_interval,
            )
        self._watcher.start()

    async def stop_watching_jobs(self) -> None:
        if self._watcher is not None:
            await self._watcher.stop()

    def job_submitted(self) -> None:
        """A job was just submitted: follow it now rather than at the next pass."""
        if self._watcher is not None:
            self._watcher.job_submitted()
