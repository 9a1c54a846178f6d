"""What the handlers share: the database, the configuration they need, the users seen so far."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .db.engine import Database, SchemaMismatch
from .db.row_security import ADMIN_ROLE, DatabaseIdentity
from .errors import Forbidden, SchemaUnavailable, Unavailable
from .runner.launcher import JobLauncher
from .runner.settings import RunnerSettings
from .services.job_watcher import JobWatcher
from .services.task_collection import TaskCollector
from .services.users import CurrentUser, caller, is_still_active
from .tokens import TokenSigner

# The key of the running jobs in jupyter_server's `last_activity_times`.
JOBS_ACTIVITY = "fractal_running_jobs"
# How long a user record (its active flag) is trusted before it is read again.
USER_CACHE_SECONDS = 2.0
# Backoff of the start-up retries while the database cannot be reached.
FIRST_RETRY_SECONDS = 0.5
LONGEST_RETRY_SECONDS = 60.0
# How long a schema that does not fit this server is believed before it is read again.
SCHEMA_RECHECK_SECONDS = 5.0
# How long a schema that fits is believed while requests come (an idle server asks nothing).
SCHEMA_REVERIFY_SECONDS = 60.0
# How long the server's end waits for a migration or schema check under way.
PREPARATION_STOP_SECONDS = 20.0


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
    # How long a user record read from the database is trusted (see `user`).
    user_cache_seconds: float = USER_CACHE_SECONDS
    # Migrate the database when it is behind (else only check it: see `ensure_ready`).
    migrate_on_start: bool = True
    schema_recheck_seconds: float = SCHEMA_RECHECK_SECONDS
    schema_reverify_seconds: float = SCHEMA_REVERIFY_SECONDS
    # The database's login role where it has row-level security (`_take_identity`), else "".
    database_role: str = ""
    _users: dict[str, tuple[float, CurrentUser]] = field(default_factory=dict)
    _ready: asyncio.Future[None] | None = None
    _schema_problem: tuple[float, SchemaUnavailable] | None = None
    _schema_checked_again_at: float = 0.0
    _ready_at: float = 0.0
    _watcher: JobWatcher | None = None
    _retrier: asyncio.Task[None] | None = None
    # jupyter_server's `last_activity_times` (see `report_running_jobs`); None outside a server.
    activity_times: dict[str, datetime] | None = None

    async def ensure_ready(self) -> None:
        """Check the schema (or, with `migrate_on_start`, migrate) once; every request
        waits for it, and later requests cost nothing, but for one query a minute while
        requests come (`schema_reverify_seconds`): an administrator may have migrated the
        database for a newer fractal-jupyter since, and this server must stop writing then.

        A failed attempt (database unreachable) is forgotten, so that a later request retries;
        it raises `Unavailable` (a 503) naming the setting and the reason, never falls back.
        A schema that does not fit (`SchemaMismatch`) is a `SchemaUnavailable` that requests
        get without a query for `schema_recheck_seconds`, then the next one looks again: an
        administrator's `jupyter fractal db upgrade` is picked up without a restart.
        """
        if (
            self._ready is not None
            and self._ready.done()
            and time.monotonic() - self._ready_at >= self.schema_reverify_seconds
        ):
            self._ready = None  # a newer server may have migrated the database meanwhile
        if self._ready is None:
            if self._schema_problem is not None:
                checked_at, problem = self._schema_problem
                if time.monotonic() - checked_at < self.schema_recheck_seconds:
                    raise problem
            self._ready = asyncio.ensure_future(self._prepare_database())
        try:
            await asyncio.shield(self._ready)
        except SchemaMismatch as error:
            self._ready = None
            problem = SchemaUnavailable(str(error))
            if self._schema_problem is None or self._schema_problem[1].detail != problem.detail:
                self.log.error("fractal_jupyter: %s", error)
            self._schema_problem = (time.monotonic(), problem)
            raise problem from None
        except Exception as error:
            self._ready = None
            shown = self.database.url.render_as_string(hide_password=True)
            reason = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
            raise Unavailable(
                f"The database FractalJupyter.db_url = {shown!r} cannot be reached or "
                f"prepared: {reason}. Nothing was done; try again later."
            ) from error
        if self._schema_problem is not None:
            self._schema_problem = None
            self.log.info("fractal_jupyter: the database schema fits this server now")
        self.start_watching_jobs()

    async def _prepare_database(self) -> None:
        if self.migrate_on_start:
            await self.database.upgrade()
        else:
            await self.database.check_schema()
        self._take_identity(await self.database.identity())
        self._ready_at = time.monotonic()

    def _take_identity(self, identity: DatabaseIdentity | None) -> None:
        """Under row-level security the database says who administers (members of its
        `fractal_admin` role), not `admin_users`, which any user can set for their own server;
        read again with every schema check, so a change shows within a minute."""
        if identity is None:
            return
        if identity.admins != self.admin_users:
            if not self.database_role:
                self.log.info(
                    "fractal_jupyter: the database has row-level security: its role %s "
                    "decides the administrators (%s), not FractalJupyter.admin_users",
                    ADMIN_ROLE,
                    ", ".join(sorted(identity.admins)) or "none",
                )
            self.admin_users = identity.admins
            self.forget_users()
        self.database_role = identity.role

    async def refuse_if_schema_mismatch(self) -> None:
        """For routes that need no database (api/alive/): the schema's 503 while it lasts,
        so that every Fractal route says why this server does not serve."""
        if self._schema_problem is not None:
            await self.ensure_ready()

    def schema_may_have_changed(self) -> None:
        """A statement met a table or column that is not there: check the schema again at
        the next request (at most every `schema_recheck_seconds`)."""
        now = time.monotonic()
        if (
            self._ready is not None
            and self._ready.done()
            and now - self._schema_checked_again_at >= self.schema_recheck_seconds
        ):
            self._schema_checked_again_at = now
            self._ready = None

    def retry_until_ready(self) -> None:
        """Retry the migrations in the background, with backoff, until they succeed."""
        if self._retrier is None:
            self._retrier = asyncio.ensure_future(self._retry_until_ready())

    async def _retry_until_ready(self) -> None:
        delay = FIRST_RETRY_SECONDS
        while True:
            await asyncio.sleep(delay)
            try:
                await self.ensure_ready()
            except Unavailable as error:
                delay = min(delay * 2, LONGEST_RETRY_SECONDS)
                if not isinstance(error, SchemaUnavailable):  # said once by ensure_ready
                    self.log.warning("fractal_jupyter: %s Retrying in %.1f s.", error.detail, delay)
                continue
            self.log.info("fractal_jupyter: the database is ready")
            await self.reap_orphaned_collections()
            return

    async def reap_orphaned_collections(self) -> None:
        """Once the database is ready: fail the collections an earlier server left running.
        Nothing waits on this, so a failure (the database gone again, the server stopping)
        is logged here rather than lost in a background task or raised into the stop."""
        try:
            await self.collector.reap_orphans()
        except Exception as error:
            self.log.warning(
                "fractal_jupyter: could not look for task collections left by an earlier "
                "server: %s",
                error,
            )

    async def stop_retrying(self) -> None:
        if self._retrier is not None:
            self._retrier.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retrier
            self._retrier = None

    async def user(self, username: str, *, fresh: bool = False) -> CurrentUser:
        """The caller's user record, created on first sight, then kept in memory for
        `user_cache_seconds` (or read again now when `fresh`).

        Not longer: on a shared database an admin may deactivate the user through another
        server, and the user's requests here (their bearer tokens too) must stop soon after.
        """
        now = time.monotonic()
        known = self._users.get(username)
        if known is not None and not fresh:
            seen_at, current = known
            if now - seen_at < self.user_cache_seconds:
                return current
            # A read, not a write: it must not queue behind a long write (an import).
            async with self.database.session() as session:
                if await is_still_active(session, current.id):
                    self._users[username] = (now, current)
                    return current
        # Unknown, deactivated (`caller` says so) or to be read afresh.
        self._users.pop(username, None)
        if self.database_role and username != self.database_role:
            raise Forbidden(
                f"This server reaches the Fractal database as {self.database_role!r}, whose "
                f"rows are not {username!r}'s (the database has row-level security): "
                f"{username!r} uses Fractal through their own server."
            )
        is_superuser = username in self.admin_users
        async with self.database.session(write=True) as session:
            current = await caller(session, username, is_superuser)
        self._users[username] = (now, current)
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
                on_pass=self._jobs_followed,
            )
        self._watcher.start()

    async def stop(self) -> None:
        """The server's end: retries, job watching and collections stop, then the database
        connections close. A schema check or migration under way (a lazy start's first
        request may have started it, and need not have waited for it) is let finish first,
        for up to PREPARATION_STOP_SECONDS: closed under it, its connection's thread would
        later answer an event loop that is gone, and die with that connection checked out."""
        await self.stop_retrying()
        preparation = self._ready
        if preparation is not None and not preparation.done():
            finished, _ = await asyncio.wait({preparation}, timeout=PREPARATION_STOP_SECONDS)
            if not finished:
                preparation.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):  # said by ensure_ready
                await preparation
        await self.stop_watching_jobs()
        self.launcher.close()  # the job starter (runner/job_starter.py), not the jobs
        await self.collector.stop()
        await self.database.dispose()

    async def stop_watching_jobs(self) -> None:
        if self._watcher is not None:
            await self._watcher.stop()

    def job_submitted(self) -> None:
        """A job was just submitted and its process started: follow it now."""
        if self._watcher is not None:
            self._watcher.job_submitted()

    def _jobs_followed(self, running: Collection[int]) -> None:
        report_running_jobs(self.activity_times, running)


def report_running_jobs(
    activity_times: dict[str, datetime] | None, running: Collection[int]
) -> None:
    """While jobs of this user run on this host, the server counts as active.

    jupyter_server's `last_activity()` is the latest of its sources, `last_activity_times`
    among them; jupyterhub-singleuser sends it to the hub every JUPYTERHUB_ACTIVITY_INTERVAL
    (300 s), and the hub's idle culler stops servers whose last activity is too old. A job
    survives its server, but while the server is down nobody records the job's progress,
    and spawners that stop a process tree (SystemdSpawner, batchspawner) end the job too.
    Only running jobs count: nothing else the extension does in the background is activity.
    """
    if activity_times is not None and running:
        activity_times[JOBS_ACTIVITY] = datetime.now(UTC)
