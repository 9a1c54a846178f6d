"""The async engine, sessions, and schema migrations run at start-up (when needed)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from ..file_modes import make_private_dir, make_private_file, restrict_file
from .probe import MIGRATIONS_DIR, head_revision

READ_ONLY = "fractal_read_only"
SQLITE_BUSY_TIMEOUT_MS = 30_000
# PostgreSQL advisory lock key held while migrating (any constant unlikely to clash)
MIGRATION_LOCK_KEY = 0x46524A55  # "FRJU"
# Threads that run read functions on SQLite (`Database.read`); SQLite releases the GIL.
SQLITE_READ_THREADS = 4
T = TypeVar("T")

if TYPE_CHECKING:
    from alembic.config import Config


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


def _current_revision(connection: Connection) -> str | None:
    if not connection.dialect.has_table(connection, "alembic_version"):
        return None
    revisions = connection.execute(text("SELECT version_num FROM alembic_version")).all()
    return revisions[0][0] if len(revisions) == 1 else None


def _read_transaction(engine: Engine, function: Callable[[Connection], T]) -> T:
    with engine.connect() as connection, connection.begin():
        return function(connection)


class Database:
    """One engine per extension; sessions for requests.

    SQLite allows one writer at a time and answers "database is locked" to a second one that
    started its transaction as a reader. All writers of our database live in this process, so
    write sessions queue on an asyncio lock instead of racing for the file lock.
    """

    def __init__(self, url: str, echo: bool = False) -> None:
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        if self.is_sqlite and self.url.database and self.url.database != ":memory:":
            make_private_database_file(Path(self.url.database))
        self.engine: AsyncEngine = create_async_engine(self.url, echo=echo)
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
            self._sync_engine = create_engine(self.url.set(drivername="sqlite"), echo=echo)
            event.listen(self._sync_engine, "connect", _set_sqlite_pragmas)
            event.listen(self._sync_engine, "begin", _begin_sqlite_transaction)
            self._read_threads = ThreadPoolExecutor(
                SQLITE_READ_THREADS, thread_name_prefix="fractal-db-read"
            )

    async def schema_is_current(self) -> bool:
        """True when the database is at the newest migration: one cheap query."""
        head = head_revision()
        async with self.engine.connect() as connection:
            current = await connection.run_sync(_current_revision)
        return head is not None and current == head

    async def upgrade(self) -> None:
        """Bring the schema to the newest migration (creates it on an empty database).

        A database that is already current is only checked: alembic is not even imported.

        Servers sharing a PostgreSQL database often start together (a hub spawning its
        users' servers): one migrates while the others wait on a transaction-scoped advisory
        lock, then find the schema current. Without it, concurrent `CREATE TABLE`s fail.
        """
        if await self.schema_is_current():
            return
        async with self._write_lock, self.engine.begin() as connection:
            if self.url.get_backend_name() == "postgresql":
                await connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
                )
            await connection.run_sync(_upgrade_to_head)

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

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self._read_threads is not None:
            self._read_threads.shutdown(wait=True)
        if self._sync_engine is not None:
            self._sync_engine.dispose()
