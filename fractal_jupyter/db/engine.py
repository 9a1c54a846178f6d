"""The async engine, sessions, the schema revision check and the migrations."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pydantic_core
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from .._version import __version__
from ..file_modes import make_private_dir, make_private_file, restrict_file
from . import row_security
from .probe import MIGRATIONS_DIR, known_revisions
from .row_security import DatabaseIdentity, read_identity

READ_ONLY = "fractal_read_only"
SQLITE_BUSY_TIMEOUT_MS = 30_000
# PostgreSQL advisory lock key held while migrating (any constant unlikely to clash)
MIGRATION_LOCK_KEY = 0x46524A55  # "FRJU"
# Threads that run read functions on SQLite (`Database.read`); SQLite releases the GIL.
SQLITE_READ_THREADS = 4
T = TypeVar("T")

if TYPE_CHECKING:
    from alembic.config import Config


def json_text(value: Any) -> str:
    """The JSON text of a JSON column's value: pydantic-core's encoder, several times faster
    than `json.dumps` (the attributes and types of 100,000 imported images took 0.5 s). Not
    byte-equal to `json.dumps` (no blanks, UTF-8 instead of \\u escapes), which no reader
    relies on; NaN and infinities stay what `json.dumps` writes."""
    return pydantic_core.to_json(value, inf_nan_mode="constants").decode()


def _set_sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    # Let SQLAlchemy, not the sqlite3 module, decide where transactions begin, so that
    # transactions and SAVEPOINTs behave as documented (SQLAlchemy's recipe for pysqlite).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_private_database_file(path: Path) -> None:
    """The SQLite file is created 0600 (its folder 0700 when missing) before SQLite opens it:
    SQLite would create it 0644 minus the umask, and it gives its -wal and -shm files the
    mode of the database file."""
    make_private_dir(path.parent)
    make_private_file(path)
    for suffix in ("-wal", "-shm", "-journal"):
        restrict_file(path.with_name(path.name + suffix))


def _begin_sqlite_transaction(connection: Connection) -> None:
    # A read session runs each statement in its own implicit transaction: no BEGIN and
    # ROLLBACK round trips on the hot read path. Its statements stay atomic one by one.
    if not connection.get_execution_options().get(READ_ONLY):
        connection.exec_driver_sql("BEGIN")


def alembic_config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def _upgrade_to_head(connection: Connection) -> None:
    from alembic import command

    command.upgrade(alembic_config(connection), "head")


class SchemaMismatch(Exception):
    """The database's schema is not the one this code was written for; nothing was done.

    `newer`: the database has a revision this package does not know (a newer
    fractal-jupyter migrated it), so only upgrading this package helps; else the database is
    behind (or empty) and `jupyter fractal db upgrade` brings it to this package's revision.
    """

    def __init__(self, message: str, *, newer: bool) -> None:
        super().__init__(message)
        self.newer = newer


@dataclass(frozen=True)
class SchemaStatus:
    """The database's migration revision (None: no schema yet) against this package's."""

    revision: str | None
    head: str | None
    known: frozenset[str]

    @property
    def is_current(self) -> bool:
        return self.head is not None and self.revision == self.head

    @property
    def is_newer(self) -> bool:
        """The database was migrated by a newer fractal-jupyter."""
        return self.revision is not None and self.revision not in self.known

    def mismatch(self) -> SchemaMismatch | None:
        """What a server says about a schema it cannot serve, None when it can."""
        if self.is_current:
            return None
        if self.is_newer:
            return SchemaMismatch(
                "This server is older than its database; upgrade fractal-jupyter. The "
                f"database's schema is at revision {self.revision}, which fractal-jupyter "
                f"{__version__} on this server does not know (its newest is {self.head}): "
                "install the fractal-jupyter version that migrated the database.",
                newer=True,
            )
        found = (
            "has no Fractal schema yet"
            if self.revision is None
            else f"has the schema of revision {self.revision}"
        )
        return SchemaMismatch(
            f"The database is older than this server: run jupyter fractal db upgrade. It "
            f"{found}, and fractal-jupyter {__version__} needs revision {self.head}; an "
            "administrator migrates a shared database once, with the servers' configuration "
            "(`jupyter fractal db upgrade`), and this server picks the new schema up by itself.",
            newer=False,
        )


def _refresh_row_security(connection: Connection, requested: bool) -> None:
    if requested or row_security.is_installed(connection):
        row_security.install(connection)


def _current_revision(connection: Connection) -> str | None:
    if not connection.dialect.has_table(connection, "alembic_version"):
        return None
    rows = connection.execute(text("SELECT version_num FROM alembic_version")).all()
    # Several rows (branches) are none of ours: an unknown revision, like a newer one.
    return "+".join(sorted(str(row[0]) for row in rows)) or None


def unique_statement_name() -> str:
    return f"__fractal_{uuid.uuid4().hex}__"


@dataclass(frozen=True)
class ConnectionSettings:
    """How a server uses a database server (PostgreSQL); an SQLite file ignores them.

    Small by default: hundreds of user servers share one PostgreSQL, each mostly idle.
    QueuePool keeps `pool_size` connections open once used and closes the overflow ones
    when they are returned, so an idle server holds at most `pool_size` connections.
    """

    pool_size: int = 1
    max_overflow: int = 4
    # Seconds a request waits for a connection when pool_size + max_overflow are in use.
    pool_timeout: float = 30.0
    # A cheap ping before a pooled connection is reused: a database restart, or a firewall
    # or PgBouncer that dropped an idle connection, then costs no failed request.
    pre_ping: bool = True
    connect_timeout: float = 10.0
    # Longest statement, enforced by the driver (asyncpg cancels it; psycopg sets the
    # server's statement_timeout); 0: no limit. Migrations run without it.
    statement_timeout: float = 60.0
    # Shown in pg_stat_activity (and by PgBouncer's SHOW CLIENTS): whose server a
    # connection is.
    application_name: str = "fractal_jupyter"
    # The URL is a pooler in transaction pooling mode (PgBouncer's pool_mode = transaction):
    # see `_connect_arguments`.
    transaction_pooling: bool = False

    def engine_arguments(self, driver: str) -> dict[str, Any]:
        """`create_async_engine` keyword arguments for a PostgreSQL URL with `driver`."""
        return {
            "pool_size": self.pool_size,
            "max_overflow": self.max_overflow,
            "pool_timeout": self.pool_timeout,
            "pool_pre_ping": self.pre_ping,
            "connect_args": self._connect_arguments(driver, self.statement_timeout),
        }

    def migration_arguments(self, driver: str) -> dict[str, Any]:
        """The same connection, without a statement timeout."""
        return {"connect_args": self._connect_arguments(driver, 0)}

    def _connect_arguments(self, driver: str, statement_timeout: float) -> dict[str, Any]:
        connect: dict[str, Any] = {}
        if driver == "asyncpg":
            connect["timeout"] = self.connect_timeout
            connect["server_settings"] = {"application_name": self.application_name}
            if statement_timeout > 0:
                connect["command_timeout"] = statement_timeout
            if self.transaction_pooling:
                # asyncpg prepares every statement under a name that counts up from 1 on
                # each connection, and SQLAlchemy and asyncpg reuse prepared statements: behind
                # a transaction pooler the next transaction runs on any backend, where that
                # name is missing or another client's ("prepared statement ... does not
                # exist / already exists"). A unique name per statement, never reused, is
                # right on every backend.
                connect["prepared_statement_name_func"] = unique_statement_name
                connect["prepared_statement_cache_size"] = 0
                connect["statement_cache_size"] = 0
        elif driver == "psycopg":
            connect["application_name"] = self.application_name
            connect["connect_timeout"] = max(1, round(self.connect_timeout))
            if statement_timeout > 0:
                connect["options"] = f"-c statement_timeout={round(statement_timeout * 1000)}"
        return connect


def _read_transaction(engine: Engine, function: Callable[[Connection], T]) -> T:
    with engine.connect() as connection, connection.begin():
        return function(connection)


def _write_transaction(engine: Engine, function: Callable[[Session], T]) -> T:
    with Session(engine) as session, session.begin():
        return function(session)


class Database:
    """One engine per extension; sessions for requests.

    SQLite allows one writer at a time and answers "database is locked" to a second one that
    started its transaction as a reader. All writers of our database live in this process, so
    write sessions queue on an asyncio lock instead of racing for the file lock.
    """

    def __init__(
        self,
        url: str,
        echo: bool = False,
        connections: ConnectionSettings | None = None,
    ) -> None:
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        if self.is_sqlite and self.url.database and self.url.database != ":memory:":
            make_private_database_file(Path(self.url.database))
        self.driver = self.url.get_driver_name()
        self.connections = connections or ConnectionSettings()
        arguments: dict[str, Any] = {"json_serializer": json_text}
        if not self.is_sqlite:
            arguments |= self.connections.engine_arguments(self.driver)
        self.engine: AsyncEngine = create_async_engine(self.url, echo=echo, **arguments)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _set_sqlite_pragmas)
            event.listen(self.engine.sync_engine, "begin", _begin_sqlite_transaction)
        self._sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)
        self._read_sessionmaker = async_sessionmaker(
            self.engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False
        )
        self._write_lock = asyncio.Lock()
        self._sync_engine: Engine | None = None
        self._read_threads: ThreadPoolExecutor | None = None
        if self.is_sqlite and self.url.database not in (None, "", ":memory:"):
            self._sync_engine = create_engine(
                self.url.set(drivername="sqlite"), echo=echo, json_serializer=json_text
            )
            event.listen(self._sync_engine, "connect", _set_sqlite_pragmas)
            event.listen(self._sync_engine, "begin", _begin_sqlite_transaction)
            self._read_threads = ThreadPoolExecutor(
                SQLITE_READ_THREADS, thread_name_prefix="fractal-db-read"
            )

    async def schema_status(self) -> SchemaStatus:
        """The database's revision against this package's migrations: one cheap query."""
        known, head = known_revisions()
        async with self.engine.connect() as connection:
            revision = await connection.run_sync(_current_revision)
        return SchemaStatus(revision, head, known)

    async def check_schema(self) -> None:
        """Raise `SchemaMismatch` unless the database is at this package's newest migration."""
        mismatch = (await self.schema_status()).mismatch()
        if mismatch is not None:
            raise mismatch

    async def upgrade(self, *, row_security: bool = False) -> None:
        """Bring the schema to the newest migration (creates it on an empty database).

        With `row_security` (PostgreSQL only), also (re)install row-level security
        (row_security.py); a database that has it gets it rewritten by every migration, in the
        migration's transaction, so that no new table or column goes without its policies.

        A database that is already current is only checked: alembic is not even imported.
        A database migrated by a newer fractal-jupyter raises `SchemaMismatch`: nothing
        here can bring it back, and alembic would only say it cannot find the revision.

        Servers sharing a PostgreSQL database may start together (a hub spawning its
        users' servers, with `migrate_on_start`): one migrates while the others wait on a
        transaction-scoped advisory lock, then find the schema current. Without it,
        concurrent `CREATE TABLE`s fail.
        """
        if row_security and self.is_sqlite:
            raise ValueError("row-level security needs PostgreSQL; this database is SQLite")
        status = await self.schema_status()
        mismatch = status.mismatch()
        if mismatch is None and not row_security:
            return
        if mismatch is not None and mismatch.newer:
            raise mismatch
        if self.is_sqlite:
            async with self._write_lock, self.engine.begin() as connection:
                await connection.run_sync(_upgrade_to_head)
            return
        # Without the statement timeout: a migration of a large table may take minutes, and
        # waiting for the lock as long as another server migrates is the point.
        engine = create_async_engine(
            self.url, poolclass=NullPool, **self.connections.migration_arguments(self.driver)
        )
        try:
            async with engine.begin() as connection:
                await connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
                )
                if mismatch is not None:
                    await connection.run_sync(_upgrade_to_head)
                await connection.run_sync(_refresh_row_security, row_security)
        finally:
            await engine.dispose()

    async def identity(self) -> DatabaseIdentity | None:
        """The server's role and the administrators, where row security decides them."""
        if self.is_sqlite:
            return None
        async with self.engine.connect() as connection:
            return await connection.run_sync(read_identity)

    @asynccontextmanager
    async def session(self, write: bool = False) -> AsyncIterator[AsyncSession]:
        """A session; with `write`, a transaction that commits on success, else rolls back."""
        if write and self.is_sqlite:
            async with self._write_lock, self._sessionmaker() as session, session.begin():
                yield session
        elif write:
            async with self._sessionmaker() as session, session.begin():
                yield session
        else:
            async with self._read_sessionmaker() as session:
                yield session

    async def read(self, function: Callable[[Connection], T]) -> T:
        """Run `function` with a synchronous connection inside one read transaction.

        For hot read paths with several statements. Through aiosqlite every statement costs
        four hand-offs to its worker thread (cursor, execute, fetch, close), which on a small
        VM add up to more than SQLite's own work; here the whole function runs in one thread
        hand-off, with the sqlite3 driver, and its statements see one snapshot of the file
        (WAL). On PostgreSQL (and in-memory SQLite) it runs through the async engine.
        """
        if self._sync_engine is None or self._read_threads is None:
            async with self.engine.connect() as connection:
                return await connection.run_sync(function)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._read_threads, _read_transaction, self._sync_engine, function
        )

    async def write(self, function: Callable[[Session], T]) -> T:
        """Run `function` with a synchronous session in one write transaction, committed when
        it returns, rolled back when it raises.

        For small writes of several statements (adding one image): on a SQLite file the whole
        function runs in one hand-off to a database thread with the sqlite3 driver (see
        `read`), after the same lock as write sessions; elsewhere through the async engine.
        Not from inside a write session: it would wait for that session's lock.
        """
        if self._sync_engine is None or self._read_threads is None:
            async with self.session(write=True) as session:
                return await session.run_sync(function)
        async with self._write_lock:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(
                self._read_threads, _write_transaction, self._sync_engine, function
            )

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self._read_threads is not None:
            self._read_threads.shutdown(wait=True)
        if self._sync_engine is not None:
            self._sync_engine.dispose()
